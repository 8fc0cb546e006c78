/** Bumped whenever a message or the frame layout changes incompatibly. */
export const PROTOCOL_VERSION = 3;

/**
 * The daemon's port. Chosen away from the ports other Stable Diffusion servers use
 * (Automatic1111 7860, Fooocus 7865, ComfyUI 8188, InvokeAI 9090) so both can run at once.
 * The panel manifest's network permission is generated from this constant.
 */
export const DEFAULT_PORT = 7428;

export const DEFAULT_HOST = "127.0.0.1";
