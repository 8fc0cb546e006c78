import { describe, expect, it } from "vitest";
import { DEFAULT_PORT, JobRequest, parseClientMessage, parseDaemonMessage } from "../../protocol";

const job = {
  jobId: 1, mode: "txt2img", model: "sd15", prompt: "a cat", seed: 1, steps: 20, guidance: 7.5, scheduler: "euler", width: 512, height: 512,
};

describe("messages", () => {
  it("uses a port no well-known Stable Diffusion server uses", () => {
    expect([7860, 7865, 8188, 9090]).not.toContain(DEFAULT_PORT);
  });

  it("fills the documented defaults of a job", () => {
    const parsed = JobRequest.parse(job);
    expect(parsed).toMatchObject({ negativePrompt: "", strength: 1, variations: 1, truncatePrompt: false, previews: true });
  });

  it("names the field that is wrong", () => {
    const outcome = parseClientMessage(JSON.stringify({ type: "submit", job: { ...job, steps: 0 } }));
    expect(outcome).toMatchObject({ ok: false, code: "invalid_message" });
    expect(!outcome.ok && outcome.message).toMatch(/job\.steps/);
  });

  it("requires the pixels a mode needs", () => {
    const inpaint = { ...job, mode: "inpaint", image: { frameId: 1, width: 8, height: 8, channels: 4 } };
    const outcome = parseClientMessage(JSON.stringify({ type: "submit", job: inpaint }));
    expect(!outcome.ok && outcome.message).toMatch(/inpaint needs a mask/);
    const withMask = { ...inpaint, mask: { frameId: 2, width: 8, height: 8, channels: 1 } };
    expect(parseClientMessage(JSON.stringify({ type: "submit", job: withMask })).ok).toBe(true);
  });

  it("tells malformed JSON from an unknown type", () => {
    expect(parseClientMessage("{nope")).toMatchObject({ ok: false, code: "malformed_json" });
    expect(parseClientMessage('{"type":"launch-missiles"}')).toMatchObject({ ok: false, code: "unknown_message" });
    expect(parseClientMessage("[1,2]")).toMatchObject({ ok: false, code: "unknown_message" });
    // a daemon-only message is unknown to the daemon
    expect(parseClientMessage('{"type":"welcome"}')).toMatchObject({ ok: false, code: "unknown_message" });
  });

  it("parses daemon messages on the client side", () => {
    expect(parseDaemonMessage('{"type":"progress","jobId":1,"stage":"denoising","step":2,"total":20}')).toMatchObject({ ok: true });
    expect(parseDaemonMessage('{"type":"progress","jobId":1,"stage":"dreaming","step":2,"total":20}').ok).toBe(false);
  });
});
