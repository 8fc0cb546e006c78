/**
 * Pixel math on Photoshop-sized buffers: mask operations and pre-fill on 4096 x 4096, in CPU
 * milliseconds of this process (a shared machine's wall clock says little), beside a plain
 * full-buffer copy measured in the same run as the yardstick.
 */
import { featherMask, growMask, masksFor, shrinkMask } from "../../daemon/imaging/mask";
import { prefill } from "../../daemon/imaging/prefill";
import type { Pixels } from "../../geometry";
import { ellipseSelection } from "./compositing";
import { printSection, type Figures } from "./report";

function cpuMs(run: () => unknown): number {
  const start = process.cpuUsage();
  run();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

export function benchImaging(quick: boolean): Figures {
  const size = quick ? 1024 : 4096;
  const s = size / 4096;
  const ellipse = ellipseSelection(size, size, 2000 * s, 2100 * s, 1200 * s, 900 * s, 8);
  const selection: Pixels = { width: size, height: size, channels: 1, data: ellipse.data };
  const image: Pixels = { width: size, height: size, channels: 3, data: new Uint8Array(size * size * 3) };
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) image.data.set([x >> 4, y >> 4, (x + y) >> 5], (y * size + x) * 3);
  const copy = cpuMs(() => new Uint8Array(image.data));
  const times: Record<string, number> = {
    grow16: cpuMs(() => growMask(selection, 16)),
    shrink32: cpuMs(() => shrinkMask(selection, 32)),
    feather64: cpuMs(() => featherMask(selection, 64)),
    masksFor: cpuMs(() => masksFor(selection)),
    prefillBlur: cpuMs(() => prefill(image, selection, "blur")),
    prefillPropagate: cpuMs(() => prefill(image, selection, "propagate")),
  };
  printSection(`Imaging on ${size}x${size} (a ${Math.round(2400 * s)}x${Math.round(1800 * s)} soft selection), CPU ms`, [
    { what: "copy of the RGB buffer", value: copy.toFixed(0), note: "yardstick" },
    ...Object.entries(times).map(([what, ms]) => ({ what, value: ms.toFixed(0) })),
  ]);
  return Object.fromEntries([["imaging.size", size], ["imaging.copyMs", copy], ...Object.entries(times).map(([k, v]) => [`imaging.${k}Ms`, v])]);
}
