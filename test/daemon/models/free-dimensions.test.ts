/**
 * DirectML sessions get free-dimension overrides for the job's shape (Olive's DML exports expect
 * them) and are made again when the shape changes; other providers get none and keep their sessions.
 */
import { describe, expect, it } from "vitest";
import { InferenceSession } from "onnxruntime-node";
import { sessionOptionsFor, type SessionFactory } from "../../../daemon/models/execution-provider";
import { freeDimensionOverrides } from "../../../daemon/models/free-dimensions";
import { loadModelFolder } from "../../../daemon/models/model-folder";
import { ModelSessions } from "../../../daemon/models/model-sessions";
import { fixtureModelDir } from "../../helpers/model-fixtures";

const job512 = { unetBatch: 2, latentHeight: 64, latentWidth: 96, unetChannels: 4, vaeScaleFactor: 8 };

describe("free-dimension overrides", () => {
  it("pin Olive's UNet axes and the VAE's to the job's shape", () => {
    expect(freeDimensionOverrides("unet", job512)).toMatchObject({
      unet_sample_batch: 2,
      unet_sample_channels: 4,
      unet_sample_height: 64,
      unet_sample_width: 96,
      unet_time_batch: 1,
      unet_hidden_batch: 2,
      unet_hidden_sequence: 77,
    });
    expect(freeDimensionOverrides("vaeDecoder", job512)).toMatchObject({ batch: 1, height: 64, width: 96 });
    expect(freeDimensionOverrides("vaeEncoder", job512)).toMatchObject({ batch: 1, channels: 3, height: 512, width: 768 });
    expect(freeDimensionOverrides("textEncoder", job512)).toMatchObject({ sequence: 77 });
  });

  it("go into DirectML's session options only", () => {
    const dims = freeDimensionOverrides("unet", job512);
    expect(sessionOptionsFor("dml", 2, dims).freeDimensionOverrides).toEqual(dims);
    expect(sessionOptionsFor("cpu", 2, dims).freeDimensionOverrides).toBeUndefined();
    expect(sessionOptionsFor("cuda", 2, dims).freeDimensionOverrides).toBeUndefined();
  });

  it("a new shape makes DirectML sessions again with its overrides; the same shape keeps them", async () => {
    const folder = await loadModelFolder(fixtureModelDir("tiny-sd"));
    const asked: { providers: unknown; dims: unknown }[] = [];
    // A "DirectML" that runs on the CPU, so the test runs on any machine.
    const factory: SessionFactory = (p, options) => {
      asked.push({ providers: options.executionProviders?.[0], dims: options.freeDimensionOverrides });
      return InferenceSession.create(p, { ...options, executionProviders: ["cpu"] });
    };
    const sessions = new ModelSessions(folder, { devices: ["dml", "cpu"], factory, compiled: () => ["cpu", "dml"], threads: 1 });
    try {
      await sessions.useShape({ ...job512, latentHeight: 8, latentWidth: 8 });
      expect((await sessions.vaeDecoder()).device).toBe("dml");
      expect(asked.at(-1)).toEqual({ providers: "dml", dims: expect.objectContaining({ height: 8, width: 8 }) });
      await sessions.useShape({ ...job512, latentHeight: 8, latentWidth: 8 });
      await sessions.vaeDecoder();
      expect(asked).toHaveLength(1);
      await sessions.useShape({ ...job512, latentHeight: 8, latentWidth: 12 });
      expect(sessions.loaded()).toEqual([]);
      await sessions.vaeDecoder();
      expect(asked).toHaveLength(2);
      expect(asked.at(-1)!.dims).toMatchObject({ height: 8, width: 12 });
    } finally {
      await sessions.release();
    }
  });
});
