export { ClipTokenizer, clipCleanText } from "./clip-tokenizer";
export type { TokenizerSettings, WindowOptions } from "./clip-tokenizer";
export { fixText } from "./ftfy";
export { pyHtmlUnescape } from "./py-html";
