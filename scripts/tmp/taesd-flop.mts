import { Tensor } from "onnxruntime-node";
import { profiledFlop } from "../bench/graph-flop";
const file = "/work/main/.cache/bench-models/draft-models/taesd/taesd_decoder.onnx";
const flop = await profiledFlop(process.argv[2] ?? file, { [process.argv[3] ?? "latent_sample"]: new Tensor("float32", new Float32Array(4 * 64 * 64), [1, 4, 64, 64]) }, "/tmp/taesd-prof");
console.log((flop / 1e9).toFixed(1), "GFLOP");
