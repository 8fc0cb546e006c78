/** Which documents Underpaint can work on, and what to tell the artist about the others. */
import type { DocumentInfo } from "../photoshop/host";

const MODE_NAMES: Record<DocumentInfo["mode"], string> = {
  rgb: "RGB",
  grayscale: "Grayscale",
  cmyk: "CMYK",
  lab: "Lab",
  indexed: "Indexed Color",
  bitmap: "Bitmap",
  duotone: "Duotone",
  multichannel: "Multichannel",
};

/** Undefined when the document can be used, else the sentence that says what to do. */
export function documentRefusal(doc: DocumentInfo): string | undefined {
  if (doc.mode === "rgb" || doc.mode === "grayscale") return undefined;
  const how = doc.mode === "bitmap" ? "Image > Mode > Grayscale, then Image > Mode > RGB Color" : "Image > Mode > RGB Color";
  return `This document is in ${MODE_NAMES[doc.mode]} mode, and Underpaint works on RGB and Grayscale documents only. Convert it with ${how} (or work on a copy), then try again.`;
}
