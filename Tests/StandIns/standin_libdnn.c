/*
 * standin_libdnn.c - TEST DOUBLE for the RDK BPU runtime libdnn.so (hbDNN 1.x).
 * It is NOT the vendor library and runs no neural network. It exports the
 * real hbDNN/hbSys function names with C linkage so camclassd's BPU backend
 * can be exercised on any Linux machine, deterministically, with faults on
 * demand, and with counters that show how the backend used the API.
 *
 * Build (what `make -C Tests/StandIns` does):
 *     cc -O2 -shared -fPIC -pthread -o libdnn.so standin_libdnn.c
 * The types come from the project's own header, so a wrong declaration there
 * breaks this build too (each function is declared through the header's
 * function type, e.g. `chbdnn_hbDNNInfer_t hbDNNInfer;`).
 *
 * ===================== FAKE MODEL FILE ======================================
 * hbDNNInitializeFromFiles takes exactly one file: a text file of key=value
 * lines ('#' starts a comment, blank lines ignored, spaces around key and
 * value trimmed). Every key may be overridden by the environment variable
 * STANDIN_DNN_<KEY> (key upper-cased, e.g. STANDIN_DNN_LATENCY_US=3310),
 * read at hbDNNInitializeFromFiles. An unknown key (in the file, or an unknown
 * STANDIN_DNN_* variable), a bad value or an unreadable file -> error status.
 *
 *   key                     default            meaning
 *   name                    standin_nv12_224   model name
 *   width, height           224, 224           input size (even, 2..8192)
 *   output                  F32                F32 | S32_SCALE | S8_SHIFT | S16_SCALE
 *   layout                  NCHW               output layout: NCHW | NHWC
 *   classes                 1000               number of scores (1..1000000)
 *   pad                     0                  output alignedShape channel count is
 *                                              rounded up to a multiple of pad (0 = none)
 *   input_stride_align      0                  input row stride rounded up to a multiple
 *                                              of this many bytes (0 = none)
 *   input_layout            NCHW               input layout: NCHW | NHWC (NHWC reports
 *                                              stride[1] = 3*Wa, as for a 3-channel image)
 *   output_stride_unit      bytes              output stride[] in bytes | elements
 *   late_write              0                  1: a task stuck by timeout_every, once
 *                                              released, still completes "in the
 *                                              background" (see BEHAVIOUR)
 *   latency_us              0                  per-task execution time
 *   cores                   1                  tasks executing concurrently (1..64); more
 *                                              queue FIFO. Throughput = cores*1e6/latency_us
 *   max_tasks               64                 hbDNNInfer fails with TASK_NUM_EXCEED_LIMIT
 *                                              when this many tasks of the model are
 *                                              created and not yet released
 *   fail_infer_every        0 (off)            every Nth hbDNNInfer call that passed
 *                                              argument checks returns RUN_TASK_FAILED
 *                                              (no task is created)
 *   timeout_every           0 (off)            every Nth created task never completes:
 *                                              hbDNNWaitTaskDone(t, ms > 0) returns TIMEOUT
 *                                              after ms; with ms <= 0 it blocks until the
 *                                              task is released from another thread (like
 *                                              a hung BPU). hbDNNReleaseTask works on it.
 *   fail_alloc_after        -1 (off)           after N successful hbSysAlloc*Mem calls
 *                                              (counted from this model's load) every
 *                                              allocation fails with HB_SYS_OUT_OF_MEMORY
 *                                              (process-wide: the most recently loaded
 *                                              model's setting applies)
 *   fail_task_status_every  0 (off)            every Nth created task completes with
 *                                              RUN_TASK_FAILED (what WaitTaskDone returns);
 *                                              its output memory is filled with 0xA5
 *   stats_file              (none)             where to write the stats JSON (see below);
 *                                              STANDIN_DNN_STATS_FILE works even without it
 * Task numbering (N-th) is per model and 1-based; timeout_every wins over
 * fail_task_status_every when both hit the same task.
 *
 * ===================== THE FAKE MODEL ======================================
 * Input 0 "input": tensorType IMG_NV12 (1), quantiType NONE,
 *   Wa = W rounded up to input_stride_align (Wa = W when 0),
 *   alignedByteSize = H*Wa + H/2*Wa.
 *   NCHW: validShape [1,3,H,W], alignedShape [1,3,H,Wa],
 *         stride = [alignedByteSize, H*Wa, Wa, 1]
 *   NHWC: validShape [1,H,W,3], alignedShape [1,H,Wa,3],
 *         stride = [alignedByteSize, 3*Wa, 3, 1] (what a 3-channel image would
 *         have: not the NV12 row stride)
 *   How the input is read (the 1.x rule: a caller may change only alignedShape
 *   and tensorType of the input properties): with the model's alignedShape,
 *   both planes at row stride Wa, UV after H rows; with alignedShape set to
 *   validShape (what the vendor's binding does), packed NV12 at row stride W,
 *   UV after H rows. stride[] of the input tensor is ignored.
 * Output 0 "output": C = classes scores, Ca = C rounded up to pad.
 *   NCHW: validShape [1,C,1,1], alignedShape [1,Ca,1,1], quantizeAxis 1,
 *         stride [Ca*e, e, e, e]
 *   NHWC: validShape [1,1,1,C], alignedShape [1,1,1,Ca], quantizeAxis 3,
 *         stride [Ca*e, Ca*e, Ca*e, e]
 *   (e = element size, strides in bytes). Score i lives at byte i * stride[axis].
 *   output_stride_unit=elements reports the same layout with stride[] counted
 *   in elements (each entry divided by e).
 *   alignedByteSize = Ca*e. The padding channels C..Ca-1 hold a large "poison"
 *   value (F32 1000.0, else the type's maximum / 2^30 for S32) so a reader that
 *   takes the aligned count for the class count picks a wrong class.
 *   output=F32        tensorType F32 (13), quantiType NONE
 *   output=S32_SCALE  tensorType S32 (14), quantiType SCALE, scaleLen C,
 *                     zeroPointLen 0,
 *                     scale[i] = 2^-(10 + 12*(i%2) + i%3) * (1 + (i%5)/8)
 *   output=S16_SCALE  tensorType S16 (11), quantiType SCALE, scaleLen C,
 *                     zeroPointLen 0, scale[i] = 2^-(7 + 4*(i%2)) * (1 + (i%5)/8)
 *   output=S8_SHIFT   tensorType S8 (8), quantiType SHIFT, shiftLen C,
 *                     shift[i] = 3 * (i%2)
 *   Raw value = round(score / scale[i]) or round(score * 2^shift[i]).
 *   Quantization error is below 0.006 for S16 and 0.001 for S32; S8_SHIFT
 *   and F32 are exact for these scores. The SCALE scales of an even channel
 *   are >8x those of the next (odd) channel, so a decoder that ignores
 *   quantizeAxis (uses scale[0] for all) gets wrong values and, for an even
 *   top class, the wrong class (here: cls+1).
 *
 * ===================== THE DETERMINISTIC FUNCTION ===========================
 *   mean  = sum of Y[r*Wa + c] for r < H, c < W   /  (H*W)
 *           (Y plane only, valid columns only; row stride Wa; UV ignored)
 *   cls   = (int)(mean * C / 256.0), clamped to [0, C-1]
 *   score[cls] = 8.0, score[(cls+1) % C] = 1.0 (unless that is cls), others 0.0
 *   e.g. constant luma 128 with C = 1000 -> class 500; luma 37 -> class 144.
 *   Dequantized values equal these within half a quantization step.
 *
 * ===================== BEHAVIOUR ===========================================
 * - hbSysAllocCachedMem / hbSysAllocMem: 64-byte aligned heap memory filled
 *   with 0xCD, fake phyAddr; recorded in a registry.
 * - hbDNNInfer checks: *task == NULL, output, *output, input and ctrl non-NULL,
 *   model handle valid, ctrl->bpuCoreId in 0..2 and priority in 0..255, the
 *   tensors' properties (tensorType, tensorLayout, validShape, alignedShape,
 *   alignedByteSize) equal the model's (copy them from Get*TensorProperties),
 *   sysMem[0].virAddr of input and output are the exact start of a live
 *   allocation of at least alignedByteSize bytes. Failing any -> error.
 *   Then max_tasks, then fail_infer_every. The task is queued FIFO to the
 *   model's `cores` worker threads. Each worker models one BPU core: a task
 *   starts at max(its submit time, the end of the core's previous task) and
 *   ends latency_us later (absolute-deadline sleep, so throughput does not
 *   drift), then the output is written into the caller's output memory.
 * - hbDNNWaitTaskDone(t, ms): ms <= 0 waits forever; returns the task status,
 *   or TIMEOUT (-6000008) if not done within ms, or INVALID_TASK_HANDLE.
 * - hbDNNReleaseTask: a queued task is cancelled; a running one is waited
 *   for (at most latency_us) and then freed. Always returns 0 for a live task.
 *   With late_write=1, releasing a stuck task (timeout_every) returns at once
 *   but its result (computed from its input as it was at hbDNNInfer) is still
 *   to be written into its output memory, at the worst moment: right after the
 *   next task that uses the same output memory has written its own result
 *   (counted in late_writes_over_result), or at hbDNNRelease of the model at the
 *   latest (late_writes counts both). hbSysFreeMem of that memory before then
 *   fails (still in use).
 * - hbDNNSetTaskDoneCb: the callback runs on the worker thread after the
 *   task is done (or at once, on the caller's thread, if it already is).
 * - hbSysFreeMem of memory a queued/running task uses -> error, not freed.
 * - hbDNNRoiInfer: this model has no resizer input -> INVALID_ARGUMENT.
 * - hbDNNRelease: cancels queued tasks, joins the workers, frees the model
 *   and any tasks of it not yet released (counted), writes the stats file.
 * - Flush bookkeeping per allocation: hbSysFlushMem(CLEAN) marks it clean; an
 *   hbDNNInfer whose input is not clean counts `unflushed_inputs`, and makes it
 *   not clean again (so every infer needs its own CLEAN). A completed task marks
 *   its output "written"; INVALIDATE clears that; an hbDNNInfer or hbSysFreeMem
 *   that meets a still "written" output counts `uninvalidated_outputs`.
 *
 * ===================== STATS ===============================================
 * int standin_dnn_stats(char *buf, size_t len): writes one JSON object (no
 * newline) of all counters; returns its length like snprintf (>= len means
 * truncated). void standin_dnn_reset_stats(void): zeroes the cumulative
 * counters (not the live ones: in_flight, active, bytes_live, allocs_live).
 * Keys (all integers except "version"):
 *   version; models_loaded, models_released, init_errors;
 *   infer_calls (every hbDNNInfer call), infer_errors (calls that returned
 *   non-zero), infer_injected_failures, roi_infer_calls;
 *   tasks_created, tasks_released, tasks_completed (ran to the end, incl.
 *   injected status errors), tasks_cancelled (released or model released
 *   while queued), tasks_stuck (timeout_every), task_status_errors,
 *   tasks_unreleased_at_model_release;
 *   in_flight / max_in_flight (created and not yet released: now / peak),
 *   active / max_active (queued or executing: now / peak);
 *   wait_calls, wait_timeouts, callbacks;
 *   allocs, alloc_failures, frees, free_errors, allocs_live,
 *   bytes_allocated (cumulative), bytes_live, max_bytes_live;
 *   flush_clean, flush_invalidate, flush_errors;
 *   unflushed_inputs, uninvalidated_outputs (heuristic, see above),
 *   unregistered_mem (hbDNNInfer with memory not from hbSysAlloc*Mem),
 *   inputs_packed (hbDNNInfer with the input's alignedShape set to validShape
 *   where the model's differs), late_writes, late_writes_over_result,
 *   invalid_calls (calls rejected for a bad argument or handle).
 * If STANDIN_DNN_STATS_FILE (or stats_file=) is set, the JSON is written to
 * that file (atomically, via rename) at every hbDNNRelease and when the
 * library is unloaded or the process exits.
 */
#define _GNU_SOURCE
#include "../../Sources/CHBDNN/include/CHBDNN.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Each exported function is declared through the project header's function
 * type: a definition that disagrees with the header does not compile. */
EXPORT chbdnn_hbDNNInitializeFromFiles_t hbDNNInitializeFromFiles;
EXPORT chbdnn_hbDNNRelease_t hbDNNRelease;
EXPORT chbdnn_hbDNNGetModelNameList_t hbDNNGetModelNameList;
EXPORT chbdnn_hbDNNGetModelHandle_t hbDNNGetModelHandle;
EXPORT chbdnn_hbDNNGetInputCount_t hbDNNGetInputCount;
EXPORT chbdnn_hbDNNGetOutputCount_t hbDNNGetOutputCount;
EXPORT chbdnn_hbDNNGetInputName_t hbDNNGetInputName;
EXPORT chbdnn_hbDNNGetOutputName_t hbDNNGetOutputName;
EXPORT chbdnn_hbDNNGetInputTensorProperties_t hbDNNGetInputTensorProperties;
EXPORT chbdnn_hbDNNGetOutputTensorProperties_t hbDNNGetOutputTensorProperties;
EXPORT chbdnn_hbDNNInfer_t hbDNNInfer;
EXPORT chbdnn_hbDNNRoiInfer_t hbDNNRoiInfer;
EXPORT chbdnn_hbDNNSetTaskDoneCb_t hbDNNSetTaskDoneCb;
EXPORT chbdnn_hbDNNWaitTaskDone_t hbDNNWaitTaskDone;
EXPORT chbdnn_hbDNNReleaseTask_t hbDNNReleaseTask;
EXPORT chbdnn_hbDNNGetVersion_t hbDNNGetVersion;
EXPORT chbdnn_hbSysAllocMem_t hbSysAllocMem;
EXPORT chbdnn_hbSysAllocCachedMem_t hbSysAllocCachedMem;
EXPORT chbdnn_hbSysFlushMem_t hbSysFlushMem;
EXPORT chbdnn_hbSysFreeMem_t hbSysFreeMem;
EXPORT int standin_dnn_stats(char *buf, size_t len);
EXPORT void standin_dnn_reset_stats(void);

#define SD_VERSION "standin-libdnn (test double) 1.0"

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

enum { OUT_F32, OUT_S32_SCALE, OUT_S8_SHIFT, OUT_S16_SCALE };

typedef struct {
    char name[128];
    long width, height, output, layout, classes, pad, input_stride_align, input_layout, output_stride_elements, late_write;
    long latency_us, cores, max_tasks;
    long fail_infer_every, timeout_every, fail_alloc_after, fail_task_status_every;
    char stats_file[1024];
} sd_config;

typedef enum { K_STR, K_INT, K_OUTPUT, K_LAYOUT, K_UNIT } sd_kind;

typedef struct {
    const char *key;
    sd_kind kind;
    size_t off;
    long min, max;
} sd_key;

#define KI(k, lo, hi) { #k, K_INT, offsetof(sd_config, k), lo, hi }
static const sd_key sd_keys[] = {
    { "name", K_STR, offsetof(sd_config, name), 1, sizeof(((sd_config *)0)->name) - 1 },
    KI(width, 2, 8192),
    KI(height, 2, 8192),
    { "output", K_OUTPUT, offsetof(sd_config, output), 0, 0 },
    { "layout", K_LAYOUT, offsetof(sd_config, layout), 0, 0 },
    KI(classes, 1, 1000000),
    KI(pad, 0, 4096),
    KI(input_stride_align, 0, 4096),
    { "input_layout", K_LAYOUT, offsetof(sd_config, input_layout), 0, 0 },
    { "output_stride_unit", K_UNIT, offsetof(sd_config, output_stride_elements), 0, 0 },
    KI(late_write, 0, 1),
    KI(latency_us, 0, 60000000),
    KI(cores, 1, 64),
    KI(max_tasks, 1, 1000000),
    KI(fail_infer_every, 0, LONG_MAX),
    KI(timeout_every, 0, LONG_MAX),
    KI(fail_alloc_after, 0, LONG_MAX),
    KI(fail_task_status_every, 0, LONG_MAX),
    { "stats_file", K_STR, offsetof(sd_config, stats_file), 0, sizeof(((sd_config *)0)->stats_file) - 1 },
};
#define SD_NKEYS (sizeof sd_keys / sizeof sd_keys[0])

static void sd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sd_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("[standin-libdnn] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void cfg_defaults(sd_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "standin_nv12_224");
    c->width = 224;
    c->height = 224;
    c->output = OUT_F32;
    c->layout = CHBDNN_LAYOUT_NCHW;
    c->input_layout = CHBDNN_LAYOUT_NCHW;
    c->classes = 1000;
    c->cores = 1;
    c->max_tasks = 64;
    c->fail_alloc_after = -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* 0 ok, -1 unknown key, -2 bad value */
static int cfg_set(sd_config *c, const char *key, const char *val) {
    for (size_t i = 0; i < SD_NKEYS; i++) {
        const sd_key *k = &sd_keys[i];
        if (strcmp(k->key, key) != 0) continue;
        char *dst = (char *)c + k->off;
        switch (k->kind) {
        case K_STR: {
            size_t n = strlen(val);
            if ((long)n < k->min || (long)n > k->max) return -2;
            memcpy(dst, val, n + 1);
            return 0;
        }
        case K_INT: {
            char *end;
            errno = 0;
            long v = strtol(val, &end, 10);
            if (errno != 0 || end == val || *end != '\0' || v < k->min || v > k->max) return -2;
            *(long *)dst = v;
            return 0;
        }
        case K_OUTPUT:
            if (strcmp(val, "F32") == 0) *(long *)dst = OUT_F32;
            else if (strcmp(val, "S32_SCALE") == 0) *(long *)dst = OUT_S32_SCALE;
            else if (strcmp(val, "S8_SHIFT") == 0) *(long *)dst = OUT_S8_SHIFT;
            else if (strcmp(val, "S16_SCALE") == 0) *(long *)dst = OUT_S16_SCALE;
            else return -2;
            return 0;
        case K_LAYOUT:
            if (strcmp(val, "NCHW") == 0) *(long *)dst = CHBDNN_LAYOUT_NCHW;
            else if (strcmp(val, "NHWC") == 0) *(long *)dst = CHBDNN_LAYOUT_NHWC;
            else return -2;
            return 0;
        case K_UNIT:
            if (strcmp(val, "bytes") == 0) *(long *)dst = 0;
            else if (strcmp(val, "elements") == 0) *(long *)dst = 1;
            else return -2;
            return 0;
        }
    }
    return -1;
}

extern char **environ;

static int32_t cfg_load(sd_config *c, const char *path) {
    cfg_defaults(c);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        sd_log("cannot open fake model '%s': %s", path, strerror(errno));
        return CHBDNN_DNN_CAN_NOT_OPEN_FILE;
    }
    char line[2048];
    int lineno = 0;
    int32_t rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash != NULL) *hash = '\0';
        char *s = trim(line);
        if (*s == '\0') continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            sd_log("%s:%d: expected key=value", path, lineno);
            rc = CHBDNN_DNN_INVALID_MODEL;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        int r = cfg_set(c, key, val);
        if (r != 0) {
            sd_log("%s:%d: %s key '%s'%s%s", path, lineno, r == -1 ? "unknown" : "bad value for",
                   key, r == -1 ? "" : ": ", r == -1 ? "" : val);
            rc = CHBDNN_DNN_INVALID_MODEL;
        }
    }
    fclose(f);
    if (rc != 0) return rc;

    /* Environment overrides; an unknown STANDIN_DNN_* variable is an error. */
    static const char prefix[] = "STANDIN_DNN_";
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, prefix, sizeof prefix - 1) != 0) continue;
        const char *kv = *e + sizeof prefix - 1;
        const char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv || (size_t)(eq - kv) >= 64) continue;
        char key[64];
        size_t n = (size_t)(eq - kv);
        for (size_t i = 0; i < n; i++) key[i] = (char)tolower((unsigned char)kv[i]);
        key[n] = '\0';
        int r = cfg_set(c, key, eq + 1);
        if (r != 0) {
            sd_log("environment %s: %s", *e, r == -1 ? "unknown key" : "bad value");
            return CHBDNN_DNN_INVALID_MODEL;
        }
    }
    if (c->width % 2 != 0 || c->height % 2 != 0) {
        sd_log("%s: width and height must be even for NV12", path);
        return CHBDNN_DNN_INVALID_MODEL;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct sd_alloc {
    struct sd_alloc *next;
    void *ptr;
    uint32_t size;
    uint64_t phy;
    int clean;       /* CLEANed since its last use as an input */
    int written;     /* written by a task and not INVALIDATEd since */
    int busy;        /* queued/running tasks using it */
    uint8_t *late;   /* late_write: a released stuck task's result still to land here */
    struct sd_model *late_model;
} sd_alloc;

enum { T_QUEUED, T_RUNNING, T_DONE, T_STUCK, T_CANCELLED };

struct sd_model;

typedef struct sd_task {
    struct sd_task *next_q;   /* model queue */
    struct sd_task *next_all; /* registry of live (unreleased) tasks */
    struct sd_model *model;
    long seq;
    int state;
    int fail;                 /* complete with RUN_TASK_FAILED */
    int released;
    int waiters;              /* threads holding a pointer without the lock */
    int32_t status;
    sd_alloc *in, *out;
    long in_row;              /* row stride the input is read at (Wa, or W when packed) */
    uint8_t *late_result;     /* late_write: the stuck task's result, computed at hbDNNInfer */
    struct timespec submit;
    chbdnn_task_done_cb cb;
    void *cb_user;
    int cb_done;
} sd_task;

typedef struct sd_model {
    sd_config cfg;
    const char *name_list[1];
    hbDNNTensorProperties in_props, out_props;
    float *scales;
    uint8_t *shifts;
    pthread_t *workers;
    long nworkers;
    pthread_cond_t queue_cv;
    sd_task *qhead, *qtail;
    int shutdown;
    long infer_calls; /* that reached fault injection */
    long task_seq;
    long outstanding; /* created, not released */
} sd_model;

typedef struct sd_packed {
    struct sd_packed *next;
    sd_model model;
} sd_packed;

typedef struct {
    long models_loaded, models_released, init_errors;
    long infer_calls, infer_errors, infer_injected_failures, roi_infer_calls;
    long tasks_created, tasks_released, tasks_completed, tasks_cancelled;
    long tasks_stuck, task_status_errors, tasks_unreleased_at_model_release;
    long in_flight, max_in_flight, active, max_active;
    long wait_calls, wait_timeouts, callbacks;
    long allocs, alloc_failures, frees, free_errors, allocs_live;
    long bytes_allocated, bytes_live, max_bytes_live;
    long flush_clean, flush_invalidate, flush_errors;
    long unflushed_inputs, uninvalidated_outputs, unregistered_mem, invalid_calls;
    long inputs_packed, late_writes, late_writes_over_result;
} sd_stats;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_done_cv; /* CLOCK_MONOTONIC; any task state change */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static sd_packed *g_packed;
static sd_task *g_tasks;
static sd_alloc *g_allocs;
static sd_stats g_st;
static long g_fail_alloc_after = -1;
static long g_allocs_since_cfg;
static uint64_t g_next_phy = 0x100000000ull;
static char g_stats_path[1024];

static void sd_init_once(void) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g_done_cv, &a);
    pthread_condattr_destroy(&a);
}

static void lock(void) {
    pthread_once(&g_once, sd_init_once);
    pthread_mutex_lock(&g_mu);
}
static void unlock(void) { pthread_mutex_unlock(&g_mu); }

static int32_t invalid(int32_t rc) { /* with g_mu held */
    g_st.invalid_calls++;
    return rc;
}

static sd_packed *find_packed(const void *h) {
    for (sd_packed *p = g_packed; p != NULL; p = p->next)
        if ((const void *)p == h) return p;
    return NULL;
}
static sd_model *find_model(const void *h) {
    for (sd_packed *p = g_packed; p != NULL; p = p->next)
        if ((const void *)&p->model == h) return &p->model;
    return NULL;
}
static sd_task *find_task(const void *h) {
    for (sd_task *t = g_tasks; t != NULL; t = t->next_all)
        if ((const void *)t == h) return t;
    return NULL;
}
static sd_alloc *find_alloc(const void *ptr) {
    if (ptr == NULL) return NULL;
    for (sd_alloc *a = g_allocs; a != NULL; a = a->next)
        if (a->ptr == ptr) return a;
    return NULL;
}

static void unlink_task(sd_task *t) {
    for (sd_task **pp = &g_tasks; *pp != NULL; pp = &(*pp)->next_all)
        if (*pp == t) { *pp = t->next_all; return; }
}

/* Free a task once nobody can touch it any more (g_mu held). */
static void maybe_free(sd_task *t) {
    if (t->released && t->waiters == 0 && t->state != T_QUEUED && t->state != T_RUNNING) {
        free(t->late_result);
        free(t);
    }
}

static void note_active(long delta) {
    g_st.active += delta;
    if (g_st.active > g_st.max_active) g_st.max_active = g_st.active;
}

/* ------------------------------------------------------------------------ */
/* Stats                                                                     */
/* ------------------------------------------------------------------------ */

static int stats_json(char *buf, size_t len) { /* g_mu held */
#define F(k) #k, g_st.k
    return snprintf(buf, len,
        "{\"version\":\"%s\",\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,\"%s\":%ld,"
        "\"%s\":%ld,\"%s\":%ld,\"%s\":%ld}",
        SD_VERSION, F(models_loaded), F(models_released), F(init_errors),
        F(infer_calls), F(infer_errors), F(infer_injected_failures), F(roi_infer_calls),
        F(tasks_created), F(tasks_released), F(tasks_completed), F(tasks_cancelled),
        F(tasks_stuck), F(task_status_errors), F(tasks_unreleased_at_model_release),
        F(in_flight), F(max_in_flight), F(active), F(max_active),
        F(wait_calls), F(wait_timeouts), F(callbacks),
        F(allocs), F(alloc_failures), F(frees), F(free_errors), F(allocs_live),
        F(bytes_allocated), F(bytes_live), F(max_bytes_live),
        F(flush_clean), F(flush_invalidate), F(flush_errors),
        F(unflushed_inputs), F(uninvalidated_outputs), F(unregistered_mem), F(invalid_calls),
        F(inputs_packed), F(late_writes), F(late_writes_over_result));
#undef F
}

int standin_dnn_stats(char *buf, size_t len) {
    lock();
    int n = stats_json(buf, len);
    unlock();
    return n;
}

void standin_dnn_reset_stats(void) {
    lock();
    sd_stats keep = g_st;
    memset(&g_st, 0, sizeof g_st);
    g_st.in_flight = g_st.max_in_flight = keep.in_flight;
    g_st.active = g_st.max_active = keep.active;
    g_st.bytes_live = g_st.max_bytes_live = keep.bytes_live;
    g_st.allocs_live = keep.allocs_live;
    unlock();
}

static void write_stats_file(void) { /* g_mu held */
    const char *path = g_stats_path[0] != '\0' ? g_stats_path : getenv("STANDIN_DNN_STATS_FILE");
    if (path == NULL || path[0] == '\0') return;
    char json[4096];
    int n = stats_json(json, sizeof json);
    if (n < 0 || (size_t)n >= sizeof json) return;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        sd_log("cannot write stats file '%s': %s", tmp, strerror(errno));
        return;
    }
    fprintf(f, "%s\n", json);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        sd_log("cannot write stats file '%s': %s", path, strerror(errno));
        unlink(tmp);
    }
}

/* Runs at process exit and at dlclose. */
__attribute__((destructor)) static void sd_fini(void) {
    lock();
    write_stats_file();
    unlock();
}

/* ------------------------------------------------------------------------ */
/* The fake model                                                            */
/* ------------------------------------------------------------------------ */

static long round_up(long v, long m) { return m > 0 ? (v + m - 1) / m * m : v; }

static void set_shape(hbDNNTensorShape *s, int32_t a, int32_t b, int32_t c, int32_t d) {
    memset(s, 0, sizeof *s);
    s->numDimensions = 4;
    s->dimensionSize[0] = a;
    s->dimensionSize[1] = b;
    s->dimensionSize[2] = c;
    s->dimensionSize[3] = d;
}

static int elem_size(long output) {
    switch (output) {
    case OUT_S8_SHIFT: return 1;
    case OUT_S16_SCALE: return 2;
    default: return 4;
    }
}

/* 2^e without libm (so the one-line build needs no -lm). */
static double pow2i(long e) {
    double r = 1.0;
    for (; e > 0; e--) r *= 2.0;
    for (; e < 0; e++) r /= 2.0;
    return r;
}

static double scale_for(long output, long i) {
    double frac = 1.0 + (double)(i % 5) / 8.0;
    if (output == OUT_S32_SCALE) return frac * pow2i(-(10 + 12 * (i % 2) + i % 3));
    return frac * pow2i(-(7 + 4 * (i % 2))); /* S16 */
}

static int build_model(sd_model *m) {
    const sd_config *c = &m->cfg;
    long H = c->height, W = c->width, Wa = round_up(W, c->input_stride_align);
    long C = c->classes, Ca = round_up(C, c->pad);
    int e = elem_size(c->output);
    if (H * Wa * 3 / 2 > INT32_MAX || Ca * e > INT32_MAX) return -1;

    hbDNNTensorProperties *ip = &m->in_props;
    memset(ip, 0, sizeof *ip);
    ip->tensorType = CHBDNN_TYPE_IMG_NV12;
    ip->quantiType = CHBDNN_QUANTI_NONE;
    ip->alignedByteSize = (int32_t)(H * Wa + H / 2 * Wa);
    ip->tensorLayout = (int32_t)c->input_layout;
    if (c->input_layout == CHBDNN_LAYOUT_NCHW) {
        set_shape(&ip->validShape, 1, 3, (int32_t)H, (int32_t)W);
        set_shape(&ip->alignedShape, 1, 3, (int32_t)H, (int32_t)Wa);
        ip->stride[0] = ip->alignedByteSize;
        ip->stride[1] = (int32_t)(H * Wa);
        ip->stride[2] = (int32_t)Wa;
        ip->stride[3] = 1;
    } else {
        set_shape(&ip->validShape, 1, (int32_t)H, (int32_t)W, 3);
        set_shape(&ip->alignedShape, 1, (int32_t)H, (int32_t)Wa, 3);
        ip->stride[0] = ip->alignedByteSize;
        ip->stride[1] = (int32_t)(3 * Wa);
        ip->stride[2] = 3;
        ip->stride[3] = 1;
    }

    hbDNNTensorProperties *op = &m->out_props;
    memset(op, 0, sizeof *op);
    op->tensorLayout = (int32_t)c->layout;
    if (c->layout == CHBDNN_LAYOUT_NCHW) {
        set_shape(&op->validShape, 1, (int32_t)C, 1, 1);
        set_shape(&op->alignedShape, 1, (int32_t)Ca, 1, 1);
        op->quantizeAxis = 1;
        op->stride[0] = (int32_t)(Ca * e);
        op->stride[1] = op->stride[2] = op->stride[3] = e;
    } else {
        set_shape(&op->validShape, 1, 1, 1, (int32_t)C);
        set_shape(&op->alignedShape, 1, 1, 1, (int32_t)Ca);
        op->quantizeAxis = 3;
        op->stride[0] = op->stride[1] = op->stride[2] = (int32_t)(Ca * e);
        op->stride[3] = e;
    }
    op->alignedByteSize = (int32_t)(Ca * e);
    if (c->output_stride_elements)
        for (int d = 0; d < 4; d++) op->stride[d] /= e;
    switch (c->output) {
    case OUT_F32:
        op->tensorType = CHBDNN_TYPE_F32;
        op->quantiType = CHBDNN_QUANTI_NONE;
        break;
    case OUT_S8_SHIFT:
        op->tensorType = CHBDNN_TYPE_S8;
        op->quantiType = CHBDNN_QUANTI_SHIFT;
        m->shifts = malloc((size_t)C);
        if (m->shifts == NULL) return -1;
        for (long i = 0; i < C; i++) m->shifts[i] = (uint8_t)(3 * (i % 2));
        op->shift.shiftLen = (int32_t)C;
        op->shift.shiftData = m->shifts;
        break;
    default:
        op->tensorType = c->output == OUT_S32_SCALE ? CHBDNN_TYPE_S32 : CHBDNN_TYPE_S16;
        op->quantiType = CHBDNN_QUANTI_SCALE;
        m->scales = malloc(sizeof(float) * (size_t)C);
        if (m->scales == NULL) return -1;
        for (long i = 0; i < C; i++) m->scales[i] = (float)scale_for(c->output, i);
        op->scale.scaleLen = (int32_t)C;
        op->scale.scaleData = m->scales;
        op->scale.zeroPointLen = 0;
        op->scale.zeroPointData = NULL;
        break;
    }
    m->name_list[0] = m->cfg.name;
    return 0;
}

/* Round half away from zero, saturating to [lo, hi]. */
static long long clamp_ll(double v, long long lo, long long hi) {
    if (v <= (double)lo) return lo;
    if (v >= (double)hi) return hi;
    return (long long)(v < 0 ? v - 0.5 : v + 0.5);
}

static void put_score(const sd_model *m, uint8_t *out, long i, double v, int poison) {
    const hbDNNTensorProperties *op = &m->out_props;
    size_t step = (size_t)op->stride[op->quantizeAxis] * (m->cfg.output_stride_elements ? (size_t)elem_size(m->cfg.output) : 1);
    uint8_t *dst = out + (size_t)i * step;
    switch (m->cfg.output) {
    case OUT_F32: {
        float f = poison ? 1000.0f : (float)v;
        memcpy(dst, &f, sizeof f);
        break;
    }
    case OUT_S32_SCALE: {
        int32_t r = poison ? (1 << 30) : (int32_t)clamp_ll(v / m->scales[i], INT32_MIN, INT32_MAX);
        memcpy(dst, &r, sizeof r);
        break;
    }
    case OUT_S16_SCALE: {
        int16_t r = poison ? INT16_MAX : (int16_t)clamp_ll(v / m->scales[i], INT16_MIN, INT16_MAX);
        memcpy(dst, &r, sizeof r);
        break;
    }
    case OUT_S8_SHIFT: {
        int8_t r = poison ? INT8_MAX : (int8_t)clamp_ll(v * pow2i(m->shifts[i]), INT8_MIN, INT8_MAX);
        memcpy(dst, &r, sizeof r);
        break;
    }
    }
}

/* The deterministic function (see the top of the file). Vectorised where the compiler can (GCC at
 * -O2 does not vectorise this reduction): the double's cost is CPU time in the process that
 * `camclass bench-cpu` measures, and it should be close to none, as a real BPU's is. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3")))
#endif
static void run_model(const sd_model *m, const uint8_t *in, long Wa, uint8_t *out) {
    long H = m->cfg.height, W = m->cfg.width;
    long C = m->cfg.classes, Ca = m->out_props.alignedShape.dimensionSize[m->out_props.quantizeAxis];
    uint64_t sum = 0;
    for (long r = 0; r < H; r++) {
        const uint8_t *row = in + r * Wa;
        uint32_t rs = 0; /* W <= 8192: a row's sum fits; 32-bit lanes vectorise well */
        for (long c = 0; c < W; c++) rs += row[c];
        sum += rs;
    }
    double mean = (double)sum / (double)(H * W);
    long cls = (long)(mean * (double)C / 256.0);
    if (cls < 0) cls = 0;
    if (cls > C - 1) cls = C - 1;
    long second = (cls + 1) % C;
    for (long i = 0; i < Ca; i++) {
        double v = i == cls ? 8.0 : (i == second ? 1.0 : 0.0);
        put_score(m, out, i, v, i >= C);
    }
}

/* ------------------------------------------------------------------------ */
/* Workers (one per simulated BPU core)                                      */
/* ------------------------------------------------------------------------ */

static void ts_add_us(struct timespec *t, long us) {
    t->tv_sec += us / 1000000;
    t->tv_nsec += (us % 1000000) * 1000;
    if (t->tv_nsec >= 1000000000) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000;
    }
}
static int ts_before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *worker_main(void *arg) {
    sd_model *m = arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* sharper sleeps */
    /* Named as what it is: measurements of the host process (bench-cpu, per-thread CPU) tell the
     * double's own threads from the daemon's (they would inherit the creating thread's name). */
    prctl(PR_SET_NAME, (unsigned long)"standin-bpu", 0, 0, 0);
    struct timespec core_free = { 0, 0 };
    lock();
    for (;;) {
        while (m->qhead == NULL && !m->shutdown) pthread_cond_wait(&m->queue_cv, &g_mu);
        if (m->qhead == NULL) break; /* shutdown */
        sd_task *t = m->qhead;
        m->qhead = t->next_q;
        if (m->qhead == NULL) m->qtail = NULL;
        t->state = T_RUNNING;
        long latency = m->cfg.latency_us;
        struct timespec start = t->submit;
        uint8_t *in = t->in->ptr, *out = t->out->ptr;
        long in_row = t->in_row;
        int fail = t->fail;
        unlock();

        if (latency > 0) {
            if (ts_before(&start, &core_free)) start = core_free;
            ts_add_us(&start, latency);
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &start, NULL) == EINTR) {}
            core_free = start;
        }
        if (fail) memset(out, 0xA5, (size_t)m->out_props.alignedByteSize);
        else run_model(m, in, in_row, out);

        lock();
        sd_alloc *oa = t->out;
        if (oa->late != NULL) {
            /* A released stuck task's write lands now, over this task's result. */
            memcpy(out, oa->late, (size_t)m->out_props.alignedByteSize);
            free(oa->late);
            oa->late = NULL;
            oa->late_model = NULL;
            g_st.late_writes++;
            g_st.late_writes_over_result++;
        }
        t->state = T_DONE;
        t->status = fail ? CHBDNN_DNN_RUN_TASK_FAILED : 0;
        t->in->busy--;
        t->out->busy--;
        t->out->written = 1;
        g_st.tasks_completed++;
        if (fail) g_st.task_status_errors++;
        note_active(-1);
        pthread_cond_broadcast(&g_done_cv);
        if (t->cb != NULL && !t->cb_done) {
            chbdnn_task_done_cb cb = t->cb;
            void *user = t->cb_user;
            int32_t status = t->status;
            t->cb_done = 1;
            t->waiters++;
            g_st.callbacks++;
            unlock();
            cb(t, status, user);
            lock();
            t->waiters--;
        }
        maybe_free(t);
    }
    unlock();
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Model loading                                                             */
/* ------------------------------------------------------------------------ */

static void free_model_memory(sd_packed *p) {
    free(p->model.scales);
    free(p->model.shifts);
    free(p->model.workers);
    free(p);
}

int32_t hbDNNInitializeFromFiles(hbPackedDNNHandle_t *packedHandle, const char **modelFileNames,
                                 int32_t count) {
    pthread_once(&g_once, sd_init_once);
    if (packedHandle == NULL || modelFileNames == NULL || count != 1 || modelFileNames[0] == NULL) {
        lock();
        g_st.init_errors++;
        int32_t rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
        unlock();
        if (count != 1) sd_log("hbDNNInitializeFromFiles: the stand-in takes exactly one file (got %d)", count);
        return rc;
    }
    sd_packed *p = calloc(1, sizeof *p);
    if (p == NULL) return CHBDNN_DNN_OUT_OF_MEMORY;
    sd_model *m = &p->model;
    int32_t rc = cfg_load(&m->cfg, modelFileNames[0]);
    if (rc == 0 && build_model(m) != 0) rc = CHBDNN_DNN_OUT_OF_MEMORY;
    if (rc == 0) {
        m->workers = calloc((size_t)m->cfg.cores, sizeof(pthread_t));
        if (m->workers == NULL) rc = CHBDNN_DNN_OUT_OF_MEMORY;
    }
    if (rc != 0) {
        free_model_memory(p);
        lock();
        g_st.init_errors++;
        unlock();
        return rc;
    }
    pthread_cond_init(&m->queue_cv, NULL);
    for (long i = 0; i < m->cfg.cores; i++) {
        if (pthread_create(&m->workers[i], NULL, worker_main, m) != 0) {
            lock();
            m->shutdown = 1;
            pthread_cond_broadcast(&m->queue_cv);
            g_st.init_errors++;
            unlock();
            for (long j = 0; j < i; j++) pthread_join(m->workers[j], NULL);
            pthread_cond_destroy(&m->queue_cv);
            free_model_memory(p);
            return CHBDNN_DNN_OUT_OF_MEMORY;
        }
        m->nworkers = i + 1;
    }
    lock();
    p->next = g_packed;
    g_packed = p;
    g_fail_alloc_after = m->cfg.fail_alloc_after;
    g_allocs_since_cfg = 0;
    if (m->cfg.stats_file[0] != '\0')
        snprintf(g_stats_path, sizeof g_stats_path, "%s", m->cfg.stats_file);
    g_st.models_loaded++;
    unlock();
    *packedHandle = p;
    return 0;
}

int32_t hbDNNRelease(hbPackedDNNHandle_t packedHandle) {
    lock();
    sd_packed *p = find_packed(packedHandle);
    if (p == NULL) {
        int32_t rc = invalid(CHBDNN_DNN_INVALID_PACKED_DNN_HANDLE);
        unlock();
        return rc;
    }
    for (sd_packed **pp = &g_packed; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) { *pp = p->next; break; }
    sd_model *m = &p->model;
    /* Cancel queued tasks, stop the workers (a running task finishes). */
    for (sd_task *t = m->qhead; t != NULL; t = t->next_q) {
        t->state = T_CANCELLED;
        t->status = CHBDNN_DNN_RUN_TASK_FAILED;
        t->in->busy--;
        t->out->busy--;
        g_st.tasks_cancelled++;
        note_active(-1);
    }
    m->qhead = m->qtail = NULL;
    m->shutdown = 1;
    pthread_cond_broadcast(&m->queue_cv);
    unlock();
    for (long i = 0; i < m->nworkers; i++) pthread_join(m->workers[i], NULL);
    lock();
    /* Late writes of this model's released stuck tasks land now at the latest. */
    for (sd_alloc *a = g_allocs; a != NULL; a = a->next) {
        if (a->late == NULL || a->late_model != m) continue;
        memcpy(a->ptr, a->late, (size_t)m->out_props.alignedByteSize);
        free(a->late);
        a->late = NULL;
        a->late_model = NULL;
        a->written = 1;
        g_st.late_writes++;
    }
    /* Tasks of this model the caller never released. */
    for (sd_task **pp = &g_tasks; *pp != NULL;) {
        sd_task *t = *pp;
        if (t->model != m) {
            pp = &t->next_all;
            continue;
        }
        *pp = t->next_all;
        t->released = 1;
        t->model = NULL;
        g_st.tasks_unreleased_at_model_release++;
        g_st.in_flight--;
        maybe_free(t);
    }
    pthread_cond_broadcast(&g_done_cv);
    pthread_cond_destroy(&m->queue_cv);
    free_model_memory(p);
    g_st.models_released++;
    write_stats_file();
    unlock();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Model queries                                                             */
/* ------------------------------------------------------------------------ */

int32_t hbDNNGetModelNameList(const char ***modelNameList, int32_t *modelNameCount,
                              hbPackedDNNHandle_t packedHandle) {
    lock();
    sd_packed *p = find_packed(packedHandle);
    int32_t rc = 0;
    if (modelNameList == NULL || modelNameCount == NULL) rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
    else if (p == NULL) rc = invalid(CHBDNN_DNN_INVALID_PACKED_DNN_HANDLE);
    else {
        *modelNameList = p->model.name_list;
        *modelNameCount = 1;
    }
    unlock();
    return rc;
}

int32_t hbDNNGetModelHandle(hbDNNHandle_t *dnnHandle, hbPackedDNNHandle_t packedHandle,
                            const char *modelName) {
    lock();
    sd_packed *p = find_packed(packedHandle);
    int32_t rc = 0;
    if (dnnHandle == NULL || modelName == NULL) rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
    else if (p == NULL) rc = invalid(CHBDNN_DNN_INVALID_PACKED_DNN_HANDLE);
    else if (strcmp(modelName, p->model.cfg.name) != 0) rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
    else *dnnHandle = &p->model;
    unlock();
    return rc;
}

static int32_t model_query(void *out, hbDNNHandle_t h, int32_t index, int what) {
    lock();
    sd_model *m = find_model(h);
    int32_t rc = 0;
    if (out == NULL) rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
    else if (m == NULL) rc = invalid(CHBDNN_DNN_INVALID_DNN_HANDLE);
    else if (what >= 2 && index != 0) rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
    else {
        switch (what) {
        case 0: /* input count */
        case 1: /* output count */
            *(int32_t *)out = 1;
            break;
        case 2: *(const char **)out = "input"; break;
        case 3: *(const char **)out = "output"; break;
        case 4: *(hbDNNTensorProperties *)out = m->in_props; break;
        case 5: *(hbDNNTensorProperties *)out = m->out_props; break;
        }
    }
    unlock();
    return rc;
}

int32_t hbDNNGetInputCount(int32_t *inputCount, hbDNNHandle_t h) { return model_query(inputCount, h, 0, 0); }
int32_t hbDNNGetOutputCount(int32_t *outputCount, hbDNNHandle_t h) { return model_query(outputCount, h, 0, 1); }
int32_t hbDNNGetInputName(const char **name, hbDNNHandle_t h, int32_t i) { return model_query(name, h, i, 2); }
int32_t hbDNNGetOutputName(const char **name, hbDNNHandle_t h, int32_t i) { return model_query(name, h, i, 3); }
int32_t hbDNNGetInputTensorProperties(hbDNNTensorProperties *p, hbDNNHandle_t h, int32_t i) {
    return model_query(p, h, i, 4);
}
int32_t hbDNNGetOutputTensorProperties(hbDNNTensorProperties *p, hbDNNHandle_t h, int32_t i) {
    return model_query(p, h, i, 5);
}

const char *hbDNNGetVersion(void) { return SD_VERSION; }

/* ------------------------------------------------------------------------ */
/* Inference                                                                 */
/* ------------------------------------------------------------------------ */

static int same_shape(const hbDNNTensorShape *a, const hbDNNTensorShape *b) {
    if (a->numDimensions != b->numDimensions || a->numDimensions < 0 || a->numDimensions > 8) return 0;
    for (int i = 0; i < a->numDimensions; i++)
        if (a->dimensionSize[i] != b->dimensionSize[i]) return 0;
    return 1;
}

static int same_props(const hbDNNTensorProperties *got, const hbDNNTensorProperties *want) {
    return got->tensorType == want->tensorType && got->tensorLayout == want->tensorLayout &&
           got->alignedByteSize == want->alignedByteSize && same_shape(&got->validShape, &want->validShape) &&
           same_shape(&got->alignedShape, &want->alignedShape);
}

/* Input: like same_props, but alignedShape may also be validShape (packed), the one change the
 * 1.x API allows besides tensorType. Returns the row stride the input is read at, 0 if unequal. */
static long input_row_stride(const hbDNNTensorProperties *got, const sd_model *m) {
    const hbDNNTensorProperties *want = &m->in_props;
    if (got->tensorType != want->tensorType || got->tensorLayout != want->tensorLayout ||
        got->alignedByteSize != want->alignedByteSize || !same_shape(&got->validShape, &want->validShape))
        return 0;
    int waxis = want->tensorLayout == CHBDNN_LAYOUT_NCHW ? 3 : 2;
    if (same_shape(&got->alignedShape, &want->alignedShape)) return want->alignedShape.dimensionSize[waxis];
    if (same_shape(&got->alignedShape, &want->validShape)) return want->validShape.dimensionSize[waxis];
    return 0;
}

/* Memory check for one tensor: NULL + stats on failure. */
static sd_alloc *tensor_mem(const hbDNNTensor *t, const hbDNNTensorProperties *want, const char *what) {
    sd_alloc *a = find_alloc(t->sysMem[0].virAddr);
    if (a == NULL) {
        g_st.unregistered_mem++;
        sd_log("hbDNNInfer: %s sysMem[0].virAddr %p is not the start of memory from hbSysAlloc*Mem", what,
               t->sysMem[0].virAddr);
        return NULL;
    }
    if (a->size < (uint32_t)want->alignedByteSize) {
        sd_log("hbDNNInfer: %s memory is %u bytes, the tensor needs %d", what, a->size, want->alignedByteSize);
        return NULL;
    }
    return a;
}

int32_t hbDNNInfer(hbDNNTaskHandle_t *task, hbDNNTensor **output, const hbDNNTensor *input,
                   hbDNNHandle_t dnnHandle, hbDNNInferCtrlParam *ctrl) {
    lock();
    g_st.infer_calls++;
    int32_t rc = 0;
    sd_model *m = NULL;
    sd_alloc *ia = NULL, *oa = NULL;
    long in_row = 0;
    if (task == NULL || *task != NULL || output == NULL || *output == NULL || input == NULL || ctrl == NULL) {
        rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
        sd_log("hbDNNInfer: NULL argument or *task != NULL");
    } else if ((m = find_model(dnnHandle)) == NULL) {
        rc = invalid(CHBDNN_DNN_INVALID_DNN_HANDLE);
    } else if (ctrl->bpuCoreId < 0 || ctrl->bpuCoreId > 2 || ctrl->priority < 0 || ctrl->priority > 255) {
        rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
        sd_log("hbDNNInfer: bad ctrl (bpuCoreId %d, priority %d)", ctrl->bpuCoreId, ctrl->priority);
    } else if ((in_row = input_row_stride(&input->properties, m)) == 0) {
        rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
        sd_log("hbDNNInfer: input properties differ from hbDNNGetInputTensorProperties "
               "(only alignedShape may be changed, to validShape)");
    } else if (!same_props(&(*output)->properties, &m->out_props)) {
        rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
        sd_log("hbDNNInfer: output properties differ from hbDNNGetOutputTensorProperties");
    } else if ((ia = tensor_mem(input, &m->in_props, "input")) == NULL ||
               (oa = tensor_mem(*output, &m->out_props, "output")) == NULL) {
        rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
    } else if (ia == oa) {
        rc = invalid(CHBDNN_DNN_INVALID_ARGUMENT);
        sd_log("hbDNNInfer: input and output share memory");
    } else if (m->outstanding >= m->cfg.max_tasks) {
        rc = CHBDNN_DNN_TASK_NUM_EXCEED_LIMIT;
    } else if (++m->infer_calls, m->cfg.fail_infer_every > 0 && m->infer_calls % m->cfg.fail_infer_every == 0) {
        rc = CHBDNN_DNN_RUN_TASK_FAILED;
        g_st.infer_injected_failures++;
    }
    sd_task *t = NULL;
    if (rc == 0 && (t = calloc(1, sizeof *t)) == NULL) rc = CHBDNN_DNN_OUT_OF_MEMORY;
    if (rc != 0) {
        g_st.infer_errors++;
        unlock();
        return rc;
    }

    if (!ia->clean) g_st.unflushed_inputs++;
    ia->clean = 0;
    if (oa->written) g_st.uninvalidated_outputs++;
    oa->written = 0;

    t->model = m;
    t->seq = ++m->task_seq;
    t->in = ia;
    t->out = oa;
    t->in_row = in_row;
    if (in_row != m->in_props.alignedShape.dimensionSize[m->in_props.tensorLayout == CHBDNN_LAYOUT_NCHW ? 3 : 2])
        g_st.inputs_packed++;
    clock_gettime(CLOCK_MONOTONIC, &t->submit);
    t->next_all = g_tasks;
    g_tasks = t;
    m->outstanding++;
    g_st.tasks_created++;
    g_st.in_flight++;
    if (g_st.in_flight > g_st.max_in_flight) g_st.max_in_flight = g_st.in_flight;
    if (m->cfg.timeout_every > 0 && t->seq % m->cfg.timeout_every == 0) {
        t->state = T_STUCK;
        g_st.tasks_stuck++;
        if (m->cfg.late_write) {
            /* Its result, as the input is now; it lands after its release (see BEHAVIOUR). */
            t->late_result = malloc((size_t)m->out_props.alignedByteSize);
            if (t->late_result != NULL) run_model(m, ia->ptr, in_row, t->late_result);
        }
    } else {
        t->fail = m->cfg.fail_task_status_every > 0 && t->seq % m->cfg.fail_task_status_every == 0;
        t->state = T_QUEUED;
        ia->busy++;
        oa->busy++;
        if (m->qtail != NULL) m->qtail->next_q = t;
        else m->qhead = t;
        m->qtail = t;
        note_active(+1);
        pthread_cond_signal(&m->queue_cv);
    }
    *task = t;
    unlock();
    return 0;
}

int32_t hbDNNRoiInfer(hbDNNTaskHandle_t *task, hbDNNTensor **output, const hbDNNTensor *input, hbDNNRoi *rois,
                      int32_t roiCount, hbDNNHandle_t dnnHandle, hbDNNInferCtrlParam *ctrl) {
    (void)task, (void)output, (void)input, (void)rois, (void)roiCount, (void)ctrl;
    lock();
    g_st.roi_infer_calls++;
    int32_t rc = invalid(find_model(dnnHandle) == NULL ? CHBDNN_DNN_INVALID_DNN_HANDLE : CHBDNN_DNN_INVALID_ARGUMENT);
    unlock();
    sd_log("hbDNNRoiInfer: the stand-in model has no resizer input");
    return rc;
}

int32_t hbDNNSetTaskDoneCb(hbDNNTaskHandle_t task, chbdnn_task_done_cb cb, void *userdata) {
    lock();
    sd_task *t = find_task(task);
    if (t == NULL || cb == NULL) {
        int32_t rc = invalid(t == NULL ? CHBDNN_DNN_INVALID_TASK_HANDLE : CHBDNN_DNN_INVALID_ARGUMENT);
        unlock();
        return rc;
    }
    t->cb = cb;
    t->cb_user = userdata;
    if (t->state == T_DONE && !t->cb_done) {
        t->cb_done = 1;
        t->waiters++;
        g_st.callbacks++;
        int32_t status = t->status;
        unlock();
        cb(t, status, userdata);
        lock();
        t->waiters--;
        maybe_free(t);
    }
    unlock();
    return 0;
}

int32_t hbDNNWaitTaskDone(hbDNNTaskHandle_t task, int32_t timeoutMs) {
    lock();
    g_st.wait_calls++;
    sd_task *t = find_task(task);
    if (t == NULL) {
        int32_t rc = invalid(CHBDNN_DNN_INVALID_TASK_HANDLE);
        unlock();
        return rc;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    ts_add_us(&deadline, (long)timeoutMs * 1000);
    t->waiters++;
    int timed_out = 0;
    while (!t->released && (t->state == T_QUEUED || t->state == T_RUNNING || t->state == T_STUCK)) {
        if (timeoutMs > 0) {
            if (pthread_cond_timedwait(&g_done_cv, &g_mu, &deadline) == ETIMEDOUT) {
                timed_out = t->state == T_QUEUED || t->state == T_RUNNING || t->state == T_STUCK;
                break;
            }
        } else {
            pthread_cond_wait(&g_done_cv, &g_mu);
        }
    }
    int32_t rc;
    if (t->released) rc = CHBDNN_DNN_INVALID_TASK_HANDLE; /* released by another thread meanwhile */
    else if (timed_out) {
        rc = CHBDNN_DNN_TIMEOUT;
        g_st.wait_timeouts++;
    } else rc = t->status;
    t->waiters--;
    maybe_free(t);
    unlock();
    return rc;
}

int32_t hbDNNReleaseTask(hbDNNTaskHandle_t task) {
    lock();
    sd_task *t = find_task(task);
    if (t == NULL) {
        int32_t rc = invalid(CHBDNN_DNN_INVALID_TASK_HANDLE);
        unlock();
        return rc;
    }
    unlink_task(t); /* from now on the handle is invalid for every call */
    sd_model *m = t->model;
    if (t->state == T_QUEUED) {
        sd_task **pp = &m->qhead, *prev = NULL;
        while (*pp != NULL && *pp != t) {
            prev = *pp;
            pp = &(*pp)->next_q;
        }
        if (*pp == t) {
            *pp = t->next_q;
            if (m->qtail == t) m->qtail = prev;
        }
        t->state = T_CANCELLED;
        t->status = CHBDNN_DNN_RUN_TASK_FAILED;
        t->in->busy--;
        t->out->busy--;
        g_st.tasks_cancelled++;
        note_active(-1);
    }
    while (t->state == T_RUNNING) pthread_cond_wait(&g_done_cv, &g_mu);
    if (t->state == T_STUCK && t->late_result != NULL) {
        /* Returns at once; the write is still to come (see BEHAVIOUR). */
        free(t->out->late);
        t->out->late = t->late_result;
        t->out->late_model = m;
        t->late_result = NULL;
    }
    t->released = 1;
    m->outstanding--;
    g_st.tasks_released++;
    g_st.in_flight--;
    pthread_cond_broadcast(&g_done_cv);
    maybe_free(t);
    unlock();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* System memory                                                             */
/* ------------------------------------------------------------------------ */

static int32_t sys_alloc(hbSysMem *mem, uint32_t size) {
    lock();
    if (mem == NULL || size == 0) {
        int32_t rc = invalid(CHBDNN_SYS_INVALID_ARGUMENT);
        unlock();
        return rc;
    }
    if (g_fail_alloc_after >= 0 && g_allocs_since_cfg >= g_fail_alloc_after) {
        g_st.alloc_failures++;
        unlock();
        return CHBDNN_SYS_OUT_OF_MEMORY;
    }
    sd_alloc *a = calloc(1, sizeof *a);
    void *ptr = NULL;
    if (a == NULL || posix_memalign(&ptr, 64, ((size_t)size + 63) / 64 * 64) != 0) {
        free(a);
        g_st.alloc_failures++;
        unlock();
        return CHBDNN_SYS_OUT_OF_MEMORY;
    }
    memset(ptr, 0xCD, size);
    a->ptr = ptr;
    a->size = size;
    a->phy = g_next_phy;
    g_next_phy += ((uint64_t)size + 4095) / 4096 * 4096;
    a->next = g_allocs;
    g_allocs = a;
    g_allocs_since_cfg++;
    g_st.allocs++;
    g_st.allocs_live++;
    g_st.bytes_allocated += size;
    g_st.bytes_live += size;
    if (g_st.bytes_live > g_st.max_bytes_live) g_st.max_bytes_live = g_st.bytes_live;
    mem->phyAddr = a->phy;
    mem->virAddr = ptr;
    mem->memSize = size;
    unlock();
    return 0;
}

int32_t hbSysAllocCachedMem(hbSysMem *mem, uint32_t size) { return sys_alloc(mem, size); }
int32_t hbSysAllocMem(hbSysMem *mem, uint32_t size) { return sys_alloc(mem, size); }

int32_t hbSysFlushMem(hbSysMem *mem, int32_t flag) {
    lock();
    sd_alloc *a = mem != NULL ? find_alloc(mem->virAddr) : NULL;
    int32_t rc = 0;
    if (a == NULL || flag <= 0 || (flag & ~(CHBDNN_MEM_CLEAN | CHBDNN_MEM_INVALIDATE)) != 0) {
        g_st.flush_errors++;
        rc = invalid(CHBDNN_SYS_INVALID_ARGUMENT);
    } else {
        if (flag & CHBDNN_MEM_CLEAN) {
            a->clean = 1;
            g_st.flush_clean++;
        }
        if (flag & CHBDNN_MEM_INVALIDATE) {
            a->written = 0;
            g_st.flush_invalidate++;
        }
    }
    unlock();
    return rc;
}

int32_t hbSysFreeMem(hbSysMem *mem) {
    lock();
    sd_alloc **pp = &g_allocs;
    if (mem != NULL && mem->virAddr != NULL)
        while (*pp != NULL && (*pp)->ptr != mem->virAddr) pp = &(*pp)->next;
    sd_alloc *a = (mem != NULL && mem->virAddr != NULL) ? *pp : NULL;
    if (a == NULL || a->busy > 0 || a->late != NULL) {
        g_st.free_errors++;
        int32_t rc = invalid(CHBDNN_SYS_INVALID_ARGUMENT);
        unlock();
        if (a != NULL) sd_log("hbSysFreeMem: memory %p is still used by a %s task", a->ptr,
                              a->late != NULL ? "timed-out (released, still writing)" : "queued or running");
        return rc;
    }
    *pp = a->next;
    if (a->written) g_st.uninvalidated_outputs++;
    g_st.frees++;
    g_st.allocs_live--;
    g_st.bytes_live -= a->size;
    free(a->ptr);
    free(a);
    unlock();
    return 0;
}
