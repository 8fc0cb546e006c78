/**
 * The registry of known models (registry.json, checked with zod when loaded): Stable Diffusion
 * checkpoints published on the Hugging Face Hub in the diffusers ONNX layout, each with the
 * revision to pull and the settings that suit it. Anything else on the hub in that layout can be
 * pulled by its owner/name id; `pullTarget` turns what the artist typed into one or the other.
 */
import { z } from "zod";
import { SchedulerName } from "../../protocol";
import registryJson from "./registry.json";
import { ModelInstallError } from "./install-errors";

const COMMIT = /^[0-9a-f]{40}$/;

/** A model folder's name: what jobs and the CLI call it. No leading dot (those are ours), no separators. */
export const ModelId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, "letters, digits, '.', '_' and '-' only, starting with a letter or digit");

/** owner/name, as the hub spells repo ids. */
export const RepoId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, "expected owner/name");

export const RegistryEntry = z
  .object({
    id: ModelId,
    name: z.string().min(1),
    repo: RepoId,
    /** A full commit when pinned; a branch otherwise (then `note` says why it is not pinned). */
    revision: z.string().min(1),
    pinned: z.boolean(),
    note: z.string().optional(),
    kind: z.enum(["txt2img", "inpainting"]),
    nativeResolution: z.number().int().positive(),
    turbo: z.boolean(),
    precision: z.enum(["fp32", "fp16"]),
    recommended: z.object({
      steps: z.number().int().min(1).max(200),
      guidance: z.number().min(0).max(50),
      scheduler: SchedulerName,
    }),
    license: z.string().min(1),
    description: z.string().min(1),
  })
  .superRefine((entry, ctx) => {
    if (entry.pinned && !COMMIT.test(entry.revision)) {
      ctx.addIssue({ code: "custom", path: ["revision"], message: "a pinned revision is a full 40-character commit hash" });
    }
    if (!entry.pinned && !entry.note) {
      ctx.addIssue({ code: "custom", path: ["note"], message: "an unpinned entry says why in `note`" });
    }
  });
export type RegistryEntry = z.infer<typeof RegistryEntry>;

export const Registry = z
  .object({ version: z.literal(1), models: z.array(RegistryEntry).min(1) })
  .superRefine((registry, ctx) => {
    const seen = new Set<string>();
    registry.models.forEach((m, i) => {
      if (seen.has(m.id)) ctx.addIssue({ code: "custom", path: ["models", i, "id"], message: `duplicate id ${m.id}` });
      seen.add(m.id);
    });
  });
export type Registry = z.infer<typeof Registry>;

let cached: Registry | undefined;

/** The registry shipped with the daemon. Throws (a bug, caught by the tests) if the JSON is invalid. */
export function loadRegistry(): Registry {
  cached ??= Registry.parse(registryJson);
  return cached;
}

export function findRegistryEntry(id: string, registry: Registry = loadRegistry()): RegistryEntry | undefined {
  return registry.models.find((m) => m.id === id);
}

/** What a pull fetches: a hub repo at a revision, installed as the folder `id`. */
export interface PullTarget {
  id: string;
  repo: string;
  revision: string;
  /** The registry entry, when the request named one. */
  entry?: RegistryEntry;
}

/**
 * A registry id ("sd-turbo") or a hub repo id ("owner/name"). A repo installs under its name
 * unless `as` says otherwise; `revision` overrides the registry's pin or the default "main".
 */
export function pullTarget(request: string, options: { revision?: string; as?: string } = {}, registry = loadRegistry()): PullTarget {
  const entry = findRegistryEntry(request, registry);
  let target: PullTarget;
  if (entry) {
    target = { id: entry.id, repo: entry.repo, revision: entry.revision, entry };
  } else if (RepoId.safeParse(request).success) {
    const known = registry.models.find((m) => m.repo.toLowerCase() === request.toLowerCase());
    target = known
      ? { id: known.id, repo: known.repo, revision: known.revision, entry: known }
      : { id: request.split("/")[1]!, repo: request, revision: "main" };
  } else {
    const ids = registry.models.map((m) => m.id).join(", ");
    throw new ModelInstallError(
      "unknown_model",
      `There is no model "${request}" in the registry (known: ${ids}); to pull another model from the Hugging Face Hub, give its repo id as owner/name.`,
    );
  }
  if (options.revision) target = { ...target, revision: options.revision };
  if (options.as) target = { ...target, id: checkModelId(options.as) };
  return target;
}

export function checkModelId(id: string): string {
  const parsed = ModelId.safeParse(id);
  if (!parsed.success) {
    throw new ModelInstallError("invalid_request", `"${id}" cannot name a model folder: ${parsed.error.issues[0]?.message ?? "invalid"}.`);
  }
  return parsed.data;
}
