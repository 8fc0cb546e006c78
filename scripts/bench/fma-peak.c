/*
 * The machine's fp32 FMA peak, the yardstick beside onnxruntime's MatMul: each thread (one per
 * core) runs ACC independent fused multiply-adds on registers, so the loop is bound by FMA
 * throughput, not by latency or memory. Built by scripts/bench/fma-peak.ts with -O3
 * -march=native: AVX-512 where the CPU has it, else AVX2+FMA, else the compiler's own vectors.
 *
 *   fma-peak THREADS MILLISECONDS TRIALS
 * prints one JSON line: {"isa":..., "lanes":..., "threads":..., "gflops": best trial, "trials": [...]}.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define LANES 16
#define ISA "avx512"
#define ACC 16 /* of 32 registers */
#define SPLAT(x) _mm512_set1_ps(x)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
static float sum(vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define LANES 8
#define ISA "avx2-fma"
#define ACC 12 /* of 16 registers: more would spill */
#define SPLAT(x) _mm256_set1_ps(x)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static float sum(vec v) {
  float out[8];
  _mm256_storeu_ps(out, v);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#else
/* GCC/Clang vector extensions: a * b + c contracts to the target's FMA (NEON, SVE at 128 bits). */
typedef float vec __attribute__((vector_size(16)));
#define LANES 4
#define ISA "generic-128"
#define ACC 12
#define SPLAT(x) ((vec){x, x, x, x})
#define FMA(a, b, c) ((a) * (b) + (c))
static float sum(vec v) { return v[0] + v[1] + v[2] + v[3]; }
#endif

/* ACC independent chains cover the FMA latency (4-5 cycles) times 2 FMA pipes, with room to spare. */
#define MAX_THREADS 256

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct job {
  long iterations;
  float result;
};

static pthread_barrier_t start;

static void *work(void *arg) {
  struct job *job = arg;
  vec acc[ACC];
  /* Multiplier just under 1 and a tiny addend: the values stay finite and normal for any count. */
  const vec b = SPLAT(0.9999999f), c = SPLAT(1e-7f);
  for (int i = 0; i < ACC; i++) acc[i] = SPLAT((float)(i + 1));
  pthread_barrier_wait(&start);
  for (long n = 0; n < job->iterations; n++) {
#pragma GCC unroll 16
    for (int i = 0; i < ACC; i++) acc[i] = FMA(acc[i], b, c);
  }
  float s = 0;
  for (int i = 0; i < ACC; i++) s += sum(acc[i]);
  job->result = s;
  return NULL;
}

/* All threads start together at the barrier; the trial lasts until the last one ends. */
static double trial(int threads, long iterations, float *check) {
  pthread_t ids[MAX_THREADS];
  struct job jobs[MAX_THREADS];
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  for (int t = 0; t < threads; t++) {
    jobs[t].iterations = iterations;
    pthread_create(&ids[t], NULL, work, &jobs[t]);
  }
  pthread_barrier_wait(&start);
  double t0 = now();
  for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
  double seconds = now() - t0;
  pthread_barrier_destroy(&start);
  for (int t = 0; t < threads; t++) *check += jobs[t].result;
  return seconds;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: fma-peak THREADS MILLISECONDS TRIALS\n");
    return 2;
  }
  int threads = atoi(argv[1]);
  double millis = atof(argv[2]);
  int trials = atoi(argv[3]);
  if (threads < 1 || threads > MAX_THREADS || millis <= 0 || trials < 1 || trials > 100) {
    fprintf(stderr, "fma-peak: THREADS 1..%d, MILLISECONDS > 0, TRIALS 1..100\n", MAX_THREADS);
    return 2;
  }
  const double flopPerIteration = 2.0 * ACC * LANES;
  float check = 0;
  /* Calibrate: grow the count until one trial takes a tenth of the wanted time. */
  long iterations = 1 << 16;
  double seconds;
  while ((seconds = trial(threads, iterations, &check)) < millis / 1e4 && iterations < (1L << 40)) iterations *= 4;
  iterations = (long)((double)iterations * (millis / 1e3) / seconds) + 1;
  double best = 0;
  printf("{\"isa\":\"%s\",\"lanes\":%d,\"accumulators\":%d,\"threads\":%d,\"iterations\":%ld,\"trials\":[", ISA, LANES, ACC, threads, iterations);
  for (int i = 0; i < trials; i++) {
    double rate = threads * (double)iterations * flopPerIteration / trial(threads, iterations, &check) / 1e9;
    if (rate > best) best = rate;
    printf("%s%.2f", i ? "," : "", rate);
  }
  /* The check sum keeps the compiler from dropping the loops; it is finite by construction. */
  printf("],\"gflops\":%.2f,\"check\":%.6g}\n", best, (double)check);
  return 0;
}
