import { describe, expect, it } from "vitest";
import { Capabilities, DEFAULT_PORT, JobRequest, parseClientMessage, parseDaemonMessage } from "../../protocol";

const job = {
  jobId: 1, mode: "txt2img", model: "sd15", prompt: "a cat", seed: 1, steps: 20, guidance: 7.5, scheduler: "euler", canvas: { width: 512, height: 512 },
};

describe("messages", () => {
  it("uses a port no well-known Stable Diffusion server uses", () => {
    expect([7860, 7865, 8188, 9090]).not.toContain(DEFAULT_PORT);
  });

  it("fills the documented defaults of a job", () => {
    const parsed = JobRequest.parse(job);
    expect(parsed).toMatchObject({ negativePrompt: "", strength: 1, variations: 1, truncatePrompt: false, previews: true, draft: false });
    expect(JobRequest.parse({ ...job, draft: true }).draft).toBe(true);
    expect(JobRequest.safeParse({ ...job, draft: "yes" }).success).toBe(false);
  });

  it("takes the document's size as the canvas, and sizes as whole positive pixels", () => {
    expect(JobRequest.safeParse({ ...job, canvas: undefined }).success).toBe(false);
    expect(JobRequest.safeParse({ ...job, width: 512, height: 512, canvas: undefined }).success).toBe(false);
    expect(JobRequest.safeParse({ ...job, output: { width: 640, height: 480 }, size: { width: 512, height: 384 } }).success).toBe(true);
    for (const size of [{ width: 0, height: 8 }, { width: 8.5, height: 8 }, { width: 8 }]) {
      expect(JobRequest.safeParse({ ...job, output: size }).success).toBe(false);
      expect(JobRequest.safeParse({ ...job, size }).success).toBe(false);
    }
    expect(JobRequest.safeParse({ ...job, budget: 64 * 64 }).success).toBe(true);
    expect(JobRequest.safeParse({ ...job, budget: 64 * 64 - 1 }).success).toBe(false);
  });

  it("wants the region inside the canvas", () => {
    const inpaint = { ...job, mode: "inpaint", image: { frameId: 1, width: 8, height: 8, channels: 4 }, mask: { frameId: 2, width: 8, height: 8, channels: 1 } };
    expect(JobRequest.safeParse({ ...inpaint, region: { x: 0, y: 0, width: 512, height: 512 } }).success).toBe(true);
    expect(JobRequest.safeParse({ ...inpaint, region: { x: 500, y: 100, width: 12, height: 12 } }).success).toBe(true);
    for (const region of [{ x: 501, y: 0, width: 12, height: 12 }, { x: -1, y: 0, width: 12, height: 12 }, { x: 0, y: 0, width: 512, height: 513 }]) {
      const outcome = parseClientMessage(JSON.stringify({ type: "submit", job: { ...inpaint, region } }));
      expect(outcome).toMatchObject({ ok: false, code: "invalid_message" });
      expect(!outcome.ok && outcome.message).toMatch(/region must lie inside the canvas/);
    }
  });

  it("names the field that is wrong", () => {
    const outcome = parseClientMessage(JSON.stringify({ type: "submit", job: { ...job, steps: 0 } }));
    expect(outcome).toMatchObject({ ok: false, code: "invalid_message" });
    expect(!outcome.ok && outcome.message).toMatch(/job\.steps/);
  });

  it("requires the pixels a mode needs", () => {
    const inpaint = { ...job, mode: "inpaint", image: { frameId: 1, width: 8, height: 8, channels: 4 } };
    const outcome = parseClientMessage(JSON.stringify({ type: "submit", job: inpaint }));
    expect(!outcome.ok && outcome.message).toMatch(/inpaint needs a mask/);
    const withMask = { ...inpaint, mask: { frameId: 2, width: 8, height: 8, channels: 1 } };
    expect(parseClientMessage(JSON.stringify({ type: "submit", job: withMask })).ok).toBe(true);
  });

  it("tells malformed JSON from an unknown type", () => {
    expect(parseClientMessage("{nope")).toMatchObject({ ok: false, code: "malformed_json" });
    expect(parseClientMessage('{"type":"launch-missiles"}')).toMatchObject({ ok: false, code: "unknown_message" });
    expect(parseClientMessage("[1,2]")).toMatchObject({ ok: false, code: "unknown_message" });
    // a daemon-only message is unknown to the daemon
    expect(parseClientMessage('{"type":"welcome"}')).toMatchObject({ ok: false, code: "unknown_message" });
  });

  it("parses daemon messages on the client side", () => {
    expect(parseDaemonMessage('{"type":"progress","jobId":1,"variation":0,"stage":"denoising","step":2,"total":20}')).toMatchObject({ ok: true });
    expect(parseDaemonMessage('{"type":"progress","jobId":1,"variation":0,"stage":"dreaming","step":2,"total":20}').ok).toBe(false);
  });

  it("wants progress to say its variation, and a result where it goes", () => {
    expect(parseDaemonMessage('{"type":"progress","jobId":1,"stage":"denoising","step":2,"total":20}').ok).toBe(false);
    expect(parseDaemonMessage('{"type":"progress","jobId":1,"variation":-1,"stage":"denoising","step":2,"total":20}').ok).toBe(false);
    const frame = { frameId: 4, width: 16, height: 8, channels: 4, bitsPerChannel: 8 };
    const result = { type: "result", jobId: 1, variation: 1, seed: 8, frame };
    expect(parseDaemonMessage(JSON.stringify(result)).ok).toBe(false);
    const placed = parseDaemonMessage(JSON.stringify({ ...result, region: { x: -3, y: 2, width: 16, height: 8 } }));
    expect(placed).toMatchObject({ ok: true, message: { region: { x: -3, y: 2, width: 16, height: 8 } } });
  });

  it("asks for a control image preview with its frame, and answers with a control frame", () => {
    const image = { frameId: 3, width: 64, height: 48, channels: 4 };
    const request = parseClientMessage(JSON.stringify({ type: "control-preview", requestId: 7, kind: "canny", image }));
    expect(request).toMatchObject({ ok: true, message: { type: "control-preview", requestId: 7, kind: "canny", image: { ...image, bitsPerChannel: 8 } } });
    for (const bad of [{ kind: "hed" }, { requestId: -1 }, { image: { ...image, channels: 2 } }, { image: undefined }]) {
      expect(parseClientMessage(JSON.stringify({ type: "control-preview", requestId: 7, kind: "canny", image, ...bad }))).toMatchObject({ ok: false, code: "invalid_message" });
    }
    const answer = { type: "control-preview", requestId: 7, kind: "canny", frame: { frameId: 9, width: 64, height: 48, channels: 3, bitsPerChannel: 8 } };
    expect(parseDaemonMessage(JSON.stringify(answer))).toMatchObject({ ok: true, message: answer });
    expect(parseDaemonMessage(JSON.stringify({ ...answer, frame: undefined })).ok).toBe(false);
  });

  it("takes capabilities with and without the pullable ControlNets and control-preview (additive fields)", () => {
    const base = {
      models: [], unavailable: [], registry: [], downloads: [], schedulers: ["euler"], modes: ["txt2img"],
      limits: { maxMessageBytes: 1, maxImagePixels: 1, maxQueuedJobsPerClient: 1, maxVariations: 1, chunkBytes: 1 },
      device: { name: "cpu", description: "CPU" },
    };
    expect(Capabilities.safeParse(base).success).toBe(true);
    const scribble = { id: "controlnet-scribble", name: "ControlNet Scribble (SD 1.5)", repo: "o/n", kind: "scribble", precision: "fp16", approximateBytes: 722558240, license: "OpenRAIL", description: "Follows strokes." };
    const parsed = Capabilities.parse({ ...base, registryControlNets: [scribble], controlPreview: true, controlNets: [{ id: "controlnet-scribble", name: "n", kind: "scribble", registryId: "controlnet-scribble" }] });
    expect(parsed.registryControlNets).toEqual([scribble]);
    expect(parsed.controlPreview).toBe(true);
    expect(Capabilities.safeParse({ ...base, registryControlNets: [{ ...scribble, kind: "hed" }] }).success).toBe(false);
  });
});
