/**
 * A fast tokenizer's tokenizer.json (Hugging Face `tokenizers`): what a CLIP BPE reads of it, its
 * model's vocab (token -> id) and merges ("a b" strings, or [a, b] pairs since tokenizers 0.20).
 * The model folder checks it; the CLIP tokenizer reads its BPE from it.
 */
import { z } from "zod";

export const TokenizerJsonSchema = z.looseObject({
  model: z.looseObject({
    type: z.literal("BPE"),
    vocab: z.record(z.string(), z.number().int().nonnegative()),
    merges: z.array(z.union([z.string(), z.tuple([z.string(), z.string()])])).min(1),
  }),
});
