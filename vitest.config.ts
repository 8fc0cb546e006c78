import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The json report is what .ci/run counts; the default reporter is for people.
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: onnxruntime sessions in parallel files would fight over them.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
