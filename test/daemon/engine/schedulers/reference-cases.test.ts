/**
 * Replays every recorded scheduler call of the reference cases (shared/fixtures/reference): the
 * schedule after set_timesteps, scale_model_input against the UNet input, each step fed the recorded
 * model output and sample (so errors do not accumulate; multistep history comes from the same
 * recorded calls in sequence), with the recorded noise draws, and every add_noise call.
 */
import { afterAll, describe, expect, it } from "vitest";
import {
  createScheduler,
  parseSchedulerConfig,
  type Scheduler,
} from "../../../../daemon/engine/schedulers";
import { listReferenceCases, RecordedNoise, ReferenceCase, relativeError } from "./reference-case";

/** Latents per step: max abs error <= 1e-5 * max|ref| (shared/fixtures/README.md). */
const TOL = 1e-5;

const worst = new Map<string, { err: number; where: string }>();
function record(scheduler: string, err: number, where: string): void {
  const w = worst.get(scheduler);
  if (!w || !(err <= w.err)) worst.set(scheduler, { err, where });
}

const cases = listReferenceCases();

describe("reference cases: scheduler replay (diffusers 0.27.2)", () => {
  it("has the cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(18);
  });

  for (const c of cases) {
    it(`${c.name} (${c.scheduler}, ${c.kind})`, () => {
      const ref = ReferenceCase.load(c.dir);
      const m = ref.manifest;
      const kind = ref.schedulerName();
      const s: Scheduler = createScheduler(kind, parseSchedulerConfig(m.scheduler.config), { eta: m.params.eta ?? 0 });
      const N = m.params.num_inference_steps;

      // 1. the schedule after set_timesteps (before img2img truncation)
      s.setTimesteps(N);
      const state = m.scheduler_state;
      expect(Array.from(s.timesteps)).toEqual(state.timesteps);
      if (state.sigmas) expect(Array.from(s.sigmas ?? [])).toEqual(state.sigmas);
      expect(s.initNoiseSigma).toBe(state.init_noise_sigma);
      expect(s.order).toBe(state.order);

      // 2. get_timesteps: img2img / inpaint start at t_start * order with set_begin_index
      const tStart = ref.tStart() * s.order;
      const run = Array.from(s.timesteps.subarray(tStart));
      expect(m.steps.map((st) => st.timestep)).toEqual(run);
      if (m.kind === "img2img" || m.kind === "inpaint") s.setBeginIndex(tStart);

      // 3. add_noise calls, in the order the pipelines make them
      const addNoiseCalls = ref.has("add_noise_timesteps") ? ref.tensor("add_noise_timesteps").shape[0]! : 0;
      let call = 0;
      const checkAddNoise = (where: string): void => {
        expect(call).toBeLessThan(addNoiseCalls);
        const original = ref.at("add_noise_original", call).data;
        const noise = ref.at("add_noise_noise", call).data;
        const t = ref.at("add_noise_timesteps", call).data[0]!;
        const want = ref.at("add_noise_output", call).data;
        const err = relativeError(s.addNoise(original, noise, t), want);
        record(kind, err, `${c.name} add_noise ${where}`);
        expect(err, `${c.name} add_noise #${call} (${where})`).toBeLessThanOrEqual(TOL);
        call++;
      };
      const unetChannels = ref.tensor("unet_sample").shape[2]!;
      const strength = m.params.strength ?? 1;
      const initialAddNoise =
        m.kind === "img2img" || m.kind === "inpaint_legacy" || (m.kind === "inpaint" && strength < 1);
      const addNoiseAfterStep = (i: number): boolean =>
        m.kind === "inpaint_legacy" || (m.kind === "inpaint" && unetChannels === 4 && i < m.steps.length - 1);
      if (initialAddNoise) checkAddNoise("initial");

      // 4. the steps
      const noise = new RecordedNoise(ref, ref.schedulerDraws());
      for (let i = 0; i < m.steps.length; i++) {
        const t = m.steps[i]!.timestep;
        const sample = ref.at("step_sample", i);
        const shape = sample.shape;
        const per = sample.data.length;

        // scale_model_input: every [uncond; cond] row of the UNet input, latent channels 0-3
        const scaled = s.scaleModelInput(sample.data, t);
        const unet = ref.at("unet_sample", i);
        const rows = unet.shape[0]!;
        const batch = shape[0]!;
        const hw = shape[2]! * shape[3]!;
        const latentPerItem = 4 * hw;
        const unetPerItem = unet.shape[1]! * hw;
        const want = new Float32Array(rows * latentPerItem);
        const got = new Float32Array(rows * latentPerItem);
        for (let r = 0; r < rows; r++) {
          want.set(unet.data.subarray(r * unetPerItem, r * unetPerItem + latentPerItem), r * latentPerItem);
          const b = r % batch;
          got.set(scaled.subarray(b * latentPerItem, (b + 1) * latentPerItem), r * latentPerItem);
        }
        expect(scaled.length).toBe(per);
        const scaleErr = relativeError(got, want);
        record(kind, scaleErr, `${c.name} scale_model_input ${i}`);
        expect(scaleErr, `${c.name} scale_model_input step ${i}`).toBeLessThanOrEqual(TOL);

        const prev = s.step(ref.at("step_model_output", i).data, t, sample.data, shape, noise);
        const err = relativeError(prev, ref.at("step_prev_sample", i).data);
        record(kind, err, `${c.name} step ${i}`);
        expect(err, `${c.name} step ${i} (t=${t})`).toBeLessThanOrEqual(TOL);

        // inpainting blends: sigma schedulers take the current step index (= t_{i+1}), the others t itself
        if (addNoiseAfterStep(i)) checkAddNoise(`after step ${i}`);
      }
      expect(noise.used, `${c.name}: scheduler noise draws`).toBe(ref.schedulerDraws().length);
      expect(call, `${c.name}: add_noise calls`).toBe(addNoiseCalls);
    });
  }

  afterAll(() => {
    const lines = [...worst.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `  ${k.padEnd(16)} ${v.err.toExponential(2)}  (${v.where})`);
    console.log(`worst relative error per scheduler (max|diff| / max|ref|):\n${lines.join("\n")}`);
  });
});
