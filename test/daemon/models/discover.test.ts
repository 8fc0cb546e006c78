import { mkdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { discoverModels } from "../../../daemon/models/discover";
import { copyFixtureModel, fixtureModelDir, makeTempDir, type TempDir } from "../../helpers/model-fixtures";

let tmp: TempDir;
beforeAll(async () => {
  tmp = await makeTempDir();
  const root = tmp.dir;
  // Good models: a copy, and a link to the read-only fixture.
  await copyFixtureModel("tiny-sd", root);
  await symlink(fixtureModelDir("tiny-sd-inpaint"), path.join(root, "tiny-sd-inpaint"), "junction");
  // Broken: a copy without its UNet.
  const broken = await copyFixtureModel("tiny-sd", root, "broken-sd");
  await rm(path.join(broken, "unet", "model.onnx"));
  // Broken: a half-copied model without model_index.json.
  await mkdir(path.join(root, "half-copied", "unet"), { recursive: true });
  // Not models: ignored.
  await mkdir(path.join(root, "notes"));
  await writeFile(path.join(root, "README.txt"), "models go here");
  await mkdir(path.join(root, ".cache"));
});
afterAll(async () => {
  await tmp.cleanup();
});

describe("discoverModels", () => {
  it("lists the good folders and reports the broken ones separately", async () => {
    const { models, broken } = await discoverModels(tmp.dir);
    expect(models.map((m) => [m.id, m.kind, m.unetInChannels])).toEqual([
      ["tiny-sd", "txt2img", 4],
      ["tiny-sd-inpaint", "inpainting", 9],
    ]);
    expect(broken.map((b) => [b.id, b.error.code])).toEqual([
      ["broken-sd", "model_file_missing"],
      ["half-copied", "model_file_missing"],
    ]);
    expect(broken[0]?.error.file).toBe(path.join(tmp.dir, "broken-sd", "unet", "model.onnx"));
    expect(broken[0]?.error.message).toContain(path.join(tmp.dir, "broken-sd", "unet", "model.onnx"));
    expect(broken[1]?.error.file).toBe(path.join(tmp.dir, "half-copied", "model_index.json"));
  });

  it("a models folder that does not exist holds no models", async () => {
    expect(await discoverModels(path.join(tmp.dir, "nope"))).toEqual({ models: [], broken: [] });
  });
});
