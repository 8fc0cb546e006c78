/** The x0 and noise helpers every scheduler uses: each formula in float32, as diffusers rounds it. */
import { describe, expect, it } from "vitest";
import { noiseFromPrediction, originalFromPrediction } from "../../../../daemon/engine/schedulers/prediction";

const f = Math.fround;
const sample = Float32Array.from([0.5, -1.25, 2, 0.1]);
const output = Float32Array.from([-0.3, 0.7, 1.5, -2.2]);
const alpha = { alphaT: f(0.8), sigmaT: f(0.6) };

describe("originalFromPrediction", () => {
  it("alpha space: epsilon (x - sigma_t eps) / alpha_t, v alpha_t x - sigma_t v", () => {
    const { alphaT, sigmaT } = alpha;
    expect(Array.from(originalFromPrediction("epsilon", sample, output, alpha))).toEqual(
      Array.from(sample, (x, k) => f(f(x - f(sigmaT * output[k]!)) / alphaT)),
    );
    expect(Array.from(originalFromPrediction("v_prediction", sample, output, alpha))).toEqual(
      Array.from(sample, (x, k) => f(f(alphaT * x) - f(sigmaT * output[k]!))),
    );
  });

  it("sigma space: epsilon uses sigmaHat, v-prediction uses sigma", () => {
    const level = { sigma: f(2), sigmaHat: f(2.5) };
    expect(Array.from(originalFromPrediction("epsilon", sample, output, level))).toEqual(
      Array.from(sample, (x, k) => f(x - f(level.sigmaHat * output[k]!))),
    );
    const s2 = f(f(level.sigma * level.sigma) + 1);
    const cOut = f(-level.sigma / f(Math.sqrt(s2)));
    expect(Array.from(originalFromPrediction("v_prediction", sample, output, level))).toEqual(
      Array.from(sample, (x, k) => f(f(output[k]! * cOut) + f(x / s2))),
    );
  });

  it("a sample prediction is a copy of the model output in both spaces", () => {
    for (const type of ["sample", "original_sample"] as const) {
      for (const level of [alpha, { sigma: 1, sigmaHat: 1 }]) {
        const x0 = originalFromPrediction(type, sample, output, level);
        expect(x0).not.toBe(output);
        expect(Array.from(x0)).toEqual(Array.from(output));
      }
    }
  });

  it("recovers x0 from x_t = alpha_t x0 + sigma_t eps for every prediction type", () => {
    const x0 = Float32Array.from([0.2, -0.4, 0.9, -1.1]);
    const eps = output;
    const { alphaT, sigmaT } = alpha;
    const xt = x0.map((v, k) => alphaT * v + sigmaT * eps[k]!);
    const outputs = { epsilon: eps, v_prediction: x0.map((v, k) => alphaT * eps[k]! - sigmaT * v), sample: x0 };
    for (const [type, modelOutput] of Object.entries(outputs)) {
      const got = originalFromPrediction(type as keyof typeof outputs, xt, modelOutput, alpha);
      got.forEach((v, k) => expect(v, type).toBeCloseTo(x0[k]!, 5));
      const noise = noiseFromPrediction(type as keyof typeof outputs, xt, modelOutput, alpha);
      noise.forEach((v, k) => expect(v, type).toBeCloseTo(eps[k]!, 5));
    }
  });
});

describe("noiseFromPrediction", () => {
  it("an epsilon prediction is the model output itself", () => {
    expect(noiseFromPrediction("epsilon", sample, output, alpha)).toBe(output);
  });

  it("v: alpha_t v + sigma_t x; sample: (x - alpha_t x0) / sigma_t", () => {
    const { alphaT, sigmaT } = alpha;
    expect(Array.from(noiseFromPrediction("v_prediction", sample, output, alpha))).toEqual(
      Array.from(sample, (x, k) => f(f(alphaT * output[k]!) + f(sigmaT * x))),
    );
    expect(Array.from(noiseFromPrediction("sample", sample, output, alpha))).toEqual(
      Array.from(sample, (x, k) => f(f(x - f(alphaT * output[k]!)) / sigmaT)),
    );
  });
});
