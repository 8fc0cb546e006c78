import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");
export { FIXTURES_DIR } from "./model-fixtures";
