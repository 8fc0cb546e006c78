/**
 * What an edit costs to send and to bring back: a 400x300 selection in a 6000x4000 document,
 * read as the panel reads it (geometry's context rule, at the size the model can use) and run
 * through the daemon's job mapping and engine (a tiny model: the pixels do not matter, their
 * sizes do). Round 1 sent the whole document with a mask of the same size and got a layer of the
 * whole canvas back; that is computed beside it for the ratio.
 */
import path from "node:path";
import { mkdir } from "node:fs/promises";
import { DiffusionEngine } from "../../daemon/engine/diffusion-engine";
import { toGenerationJob } from "../../daemon/server/generation-job";
import { inpaintContext, maskedEditSize, readSize, type Pixels, type Region, type Size } from "../../geometry";
import { JobRequest, type ImageFrame } from "../../protocol";
import { printSection, type Figures } from "./report";

const CANVAS: Size = { width: 6000, height: 4000 };
const SELECTION: Region = { x: 2800, y: 1850, width: 400, height: 300 };

/** What the document holds in `region`, read at `size`: a gradient, and the selection as an ellipse. */
function readRegion(region: Region, size: Size): { image: Pixels; mask: Pixels } {
  const image = new Uint8Array(size.width * size.height * 4);
  const mask = new Uint8Array(size.width * size.height);
  const sx = region.width / size.width;
  const sy = region.height / size.height;
  const cx = SELECTION.x + SELECTION.width / 2;
  const cy = SELECTION.y + SELECTION.height / 2;
  for (let y = 0; y < size.height; y++) {
    for (let x = 0; x < size.width; x++) {
      const dx = region.x + (x + 0.5) * sx;
      const dy = region.y + (y + 0.5) * sy;
      const i = y * size.width + x;
      image.set([(dx / CANVAS.width) * 255, (dy / CANVAS.height) * 255, 128, 255], i * 4);
      const r = Math.hypot((dx - cx) / (SELECTION.width / 2), (dy - cy) / (SELECTION.height / 2));
      mask[i] = r <= 1 ? 255 : 0;
    }
  }
  return { image: { ...size, channels: 4, data: image }, mask: { ...size, channels: 1, data: mask } };
}

export async function benchTransfer(root: string, fixtures: string): Promise<Figures> {
  // As the panel does (plugin/src/operations/run.ts): the context, read no larger than the model can use.
  const folderDir = path.join(fixtures, "tiny-sd");
  const native = 512;
  const region = inpaintContext(SELECTION, CANVAS, "automatic");
  const size = readSize(region, maskedEditSize(region, native));
  const { image, mask } = readRegion(region, size);
  const frame = (pixels: Pixels, frameId: number, kind: "image" | "mask"): ImageFrame => ({ kind, jobId: 1, frameId, ...pixels, bitsPerChannel: 8 });
  const request = JobRequest.parse({
    jobId: 1,
    mode: "inpaint",
    model: "tiny-sd",
    prompt: "a red kite",
    seed: 3,
    steps: 1,
    guidance: 1,
    scheduler: "euler",
    canvas: CANVAS,
    region,
    budget: 128 * 128,
    image: { frameId: 1, width: image.width, height: image.height, channels: 4 },
    mask: { frameId: 2, width: mask.width, height: mask.height, channels: 1 },
  });
  const modelsDir = path.join(root, ".cache", "bench-transfer-models");
  await mkdir(modelsDir, { recursive: true });
  const engine = new DiffusionEngine({ modelsDir, devices: ["cpu"] });
  let results;
  try {
    const id = await engine.useFolder(folderDir);
    results = await engine.run({ ...toGenerationJob(request, { image: frame(image, 1, "image"), mask: frame(mask, 2, "mask") }), model: id }, { signal: new AbortController().signal, onProgress: () => {} });
  } finally {
    await engine.dispose();
  }
  const sent = image.data.byteLength + mask.data.byteLength;
  const returned = results.reduce((n, r) => n + r.image.data.byteLength, 0);
  const layer = results[0]!.region;
  const wholeDocument = CANVAS.width * CANVAS.height;
  const roundOneSent = wholeDocument * 4 + wholeDocument;
  const roundOneReturned = wholeDocument * 4;
  const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;
  printSection(`Transfer: inpainting a ${SELECTION.width}x${SELECTION.height} selection in a ${CANVAS.width}x${CANVAS.height} document`, [
    { what: "panel reads and sends", value: mb(sent), note: `the context ${region.width}x${region.height} at ${region.x},${region.y}, read at ${size.width}x${size.height}, RGBA + mask` },
    { what: "daemon returns", value: mb(returned), note: `one layer ${layer.width}x${layer.height} at ${layer.x},${layer.y}, document resolution, cut to where it shows` },
    { what: "round 1 (whole document each way)", value: `${mb(roundOneSent)} sent, ${mb(roundOneReturned)} returned`, note: `${(roundOneSent / sent).toFixed(0)}x and ${(roundOneReturned / returned).toFixed(0)}x more` },
  ]);
  return {
    "transfer.inpaintSentBytes": sent,
    "transfer.inpaintReturnedBytes": returned,
    "transfer.roundOneSentBytes": roundOneSent,
    "transfer.roundOneReturnedBytes": roundOneReturned,
    "transfer.sentReduction": Math.round(roundOneSent / sent),
    "transfer.returnedReduction": Math.round(roundOneReturned / returned),
  };
}
