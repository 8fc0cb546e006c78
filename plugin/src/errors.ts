/** An error meant for the artist: its message is a plain sentence the panel shows as it is. */
export class PanelError extends Error {
  constructor(
    message: string,
    readonly code: string = "panel",
  ) {
    super(message);
    this.name = "PanelError";
  }
}

/** The sentence to show for any error: ours as they are, anything else with a short prefix. */
export function sentenceOf(error: unknown): string {
  if (error instanceof PanelError) return error.message;
  const detail = error instanceof Error ? error.message : String(error);
  return `Something went wrong: ${detail}`;
}
