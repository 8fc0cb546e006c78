import path from "node:path";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import { OptimizedModelCache } from "../../daemon/models/optimized-models";
import { findRegistryEntry } from "../../daemon/models/registry";
const cacheDir = "/work/main/.cache/bench-models";
const engine = new DiffusionEngine({ modelsDir: path.join(cacheDir, "draft-models"), devices: ["cpu"], optimizedModels: new OptimizedModelCache({ dir: path.join(cacheDir, "draft-optimized-cache") }) });
const turbo = findRegistryEntry("sd-turbo")!.recommended;
for (let k = 0; k < 3; k++) {
  const t0 = performance.now(); let last = t0;
  const marks: string[] = [];
  await engine.run({ ...turbo, mode: "txt2img", model: "sd15-turbo-shaped", prompt: `a lighthouse ${k}`, negativePrompt: "", seed: 42, output: { width: 512, height: 512 }, size: { width: 512, height: 512 }, variations: 1, truncatePrompt: false, previews: true, draft: true } as never,
    { signal: new AbortController().signal, onProgress: (p) => { const now = performance.now(); marks.push(`${p.stage}:${p.step}${p.preview ? "(preview)" : ""} +${(now - last).toFixed(0)}`); last = now; } });
  marks.push(`end +${(performance.now() - last).toFixed(0)}`);
  console.log(`total ${(performance.now() - t0).toFixed(0)} ms:`, marks.join("  "));
}
await engine.dispose();
