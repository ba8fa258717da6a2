/*
 * check_standin.c - self-check of the stand-in libdnn.so (test double) and of
 * the CHBDNN loader, and a compact example of driving the hbDNN 1.x API the
 * way the BPU backend should:
 *   load -> name list -> model handle -> tensor properties -> hbSysAllocCachedMem
 *   -> write NV12 at the row stride -> hbSysFlushMem(CLEAN) -> hbDNNInfer
 *   -> hbDNNWaitTaskDone -> hbDNNReleaseTask -> hbSysFlushMem(INVALIDATE)
 *   -> decode the scores (stride, quantizeAxis, scale/shift) -> argmax.
 *
 * Usage: check_standin <path/to/libdnn.so> [--no-timing]
 * (--no-timing: print the FPS but do not judge it, e.g. under valgrind.)
 * Prints "N passed, M failed"; exit status 1 if anything failed.
 */
#define _GNU_SOURCE
#include "CHBDNN.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static chbdnn_api A;
static int g_pass, g_fail, g_no_timing, g_model_no;
static char g_dir[] = "/tmp/check_standin.XXXXXX";

#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (cond) g_pass++;                                     \
        else {                                                  \
            g_fail++;                                           \
            printf("FAIL line %d: %s: ", __LINE__, #cond);      \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
        }                                                       \
    } while (0)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- model / tensors ---------------------------------------------------- */

typedef struct {
    hbPackedDNNHandle_t packed;
    hbDNNHandle_t model;
    hbDNNTensorProperties ip, op;
} Model;

/* Write `text` as a fake model file and load it. Returns the init status. */
static int32_t open_model(Model *m, const char *text) {
    memset(m, 0, sizeof *m);
    char path[128];
    snprintf(path, sizeof path, "%s/model%d.txt", g_dir, ++g_model_no);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    const char *files[1] = { path };
    int32_t rc = A.hbDNNInitializeFromFiles(&m->packed, files, 1);
    if (rc != 0) return rc;
    const char **names = NULL;
    int32_t n = 0;
    rc = A.hbDNNGetModelNameList(&names, &n, m->packed);
    if (rc == 0) rc = A.hbDNNGetModelHandle(&m->model, m->packed, names[0]);
    if (rc == 0) rc = A.hbDNNGetInputTensorProperties(&m->ip, m->model, 0);
    if (rc == 0) rc = A.hbDNNGetOutputTensorProperties(&m->op, m->model, 0);
    return rc;
}

static void close_model(Model *m) { CHECK(A.hbDNNRelease(m->packed) == 0, "hbDNNRelease"); }

typedef struct {
    hbDNNTensor in, out; /* must stay alive while a task uses them */
} IO;

static int32_t io_alloc(const Model *m, IO *io) {
    memset(io, 0, sizeof *io);
    io->in.properties = m->ip;
    io->out.properties = m->op;
    int32_t rc = A.hbSysAllocCachedMem(&io->in.sysMem[0], (uint32_t)m->ip.alignedByteSize);
    if (rc == 0) rc = A.hbSysAllocCachedMem(&io->out.sysMem[0], (uint32_t)m->op.alignedByteSize);
    return rc;
}

static void io_free(IO *io) {
    if (io->in.sysMem[0].virAddr) CHECK(A.hbSysFreeMem(&io->in.sysMem[0]) == 0, "free in");
    if (io->out.sysMem[0].virAddr) CHECK(A.hbSysFreeMem(&io->out.sysMem[0]) == 0, "free out");
    memset(io, 0, sizeof *io);
}

/* NV12: Y plane H rows, then UV plane H/2 rows, both at row stride stride[2].
 * Valid columns get `luma`, padding columns `pad` (must not matter). */
static void fill_nv12(IO *io, int luma, int pad, int clean) {
    const hbDNNTensorProperties *p = &io->in.properties;
    int H = p->validShape.dimensionSize[2], W = p->validShape.dimensionSize[3], S = p->stride[2];
    uint8_t *y = io->in.sysMem[0].virAddr;
    for (int r = 0; r < H; r++) {
        memset(y + (size_t)r * S, luma, (size_t)W);
        memset(y + (size_t)r * S + W, pad, (size_t)(S - W));
    }
    memset(y + (size_t)H * S, 128, (size_t)(H / 2) * S);
    if (clean) A.hbSysFlushMem(&io->in.sysMem[0], CHBDNN_MEM_CLEAN);
}

static int32_t submit(const Model *m, IO *io, hbDNNTaskHandle_t *task) {
    hbDNNInferCtrlParam ctrl;
    memset(&ctrl, 0, sizeof ctrl);
    ctrl.bpuCoreId = CHBDNN_CORE_ANY;
    ctrl.priority = CHBDNN_PRIORITY_LOWEST;
    hbDNNTensor *outs = &io->out;
    *task = NULL;
    return A.hbDNNInfer(task, &outs, &io->in, m->model, &ctrl);
}

/* Dequantize the valid scores along the channel axis, honouring stride. */
static int decode(const hbDNNTensorProperties *p, const void *mem, float *dst, int max, int ignore_axis) {
    int axis = p->quantiType != CHBDNN_QUANTI_NONE ? p->quantizeAxis
                                                   : (p->tensorLayout == CHBDNN_LAYOUT_NHWC ? 3 : 1);
    int n = p->validShape.dimensionSize[axis];
    if (n > max) n = max;
    for (int i = 0; i < n; i++) {
        const uint8_t *e = (const uint8_t *)mem + (size_t)i * (size_t)p->stride[axis];
        double raw = 0;
        int8_t s8;
        int16_t s16;
        int32_t s32;
        float f;
        switch (p->tensorType) {
        case 8: memcpy(&s8, e, 1); raw = s8; break;     /* CHBDNN_TYPE_S8 */
        case 11: memcpy(&s16, e, 2); raw = s16; break;  /* CHBDNN_TYPE_S16 */
        case 14: memcpy(&s32, e, 4); raw = s32; break;  /* CHBDNN_TYPE_S32 */
        case 13: memcpy(&f, e, 4); raw = f; break;      /* CHBDNN_TYPE_F32 */
        default: return -1;
        }
        int q = ignore_axis ? 0 : i;
        if (p->quantiType == CHBDNN_QUANTI_SCALE) {
            double zp = (p->scale.zeroPointLen > q && p->scale.zeroPointData) ? p->scale.zeroPointData[q] : 0;
            raw = (raw - zp) * p->scale.scaleData[q];
        } else if (p->quantiType == CHBDNN_QUANTI_SHIFT) {
            raw = raw / (double)(1u << p->shift.shiftData[q]);
        }
        dst[i] = (float)raw;
    }
    return n;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static float g_scores[1 << 16];

/* One synchronous inference; returns the class or a negative status. */
static int run_once(const Model *m, IO *io, int luma, int pad, int32_t *wait_rc) {
    hbDNNTaskHandle_t t;
    fill_nv12(io, luma, pad, 1);
    int32_t rc = submit(m, io, &t);
    if (rc != 0) return rc;
    rc = A.hbDNNWaitTaskDone(t, 2000);
    if (wait_rc) *wait_rc = rc;
    CHECK(A.hbDNNReleaseTask(t) == 0, "release");
    if (rc != 0) return rc;
    A.hbSysFlushMem(&io->out.sysMem[0], CHBDNN_MEM_INVALIDATE);
    int n = decode(&io->out.properties, io->out.sysMem[0].virAddr, g_scores, 1 << 16, 0);
    return n > 0 ? argmax(g_scores, n) : -1;
}

static long stat_of(const char *key) {
    int (*stats)(char *, size_t) = (int (*)(char *, size_t))dlsym(A.dl_handle, "standin_dnn_stats");
    char buf[4096], pat[80];
    if (stats == NULL || stats(buf, sizeof buf) >= (int)sizeof buf) return -999;
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(buf, pat);
    return p ? atol(p + strlen(pat)) : -999;
}

/* ---- tests -------------------------------------------------------------- */

static void test_loader(const char *lib) {
    chbdnn_api bad;
    char err[512];
    CHECK(chbdnn_load("/nonexistent/libdnn.so", &bad, err, sizeof err) == -1 &&
              strstr(err, "libdnn.so not found at '/nonexistent/libdnn.so' (") &&
              strstr(err, "hobot-dnn package installed"), "%s", err);
    CHECK(chbdnn_load("libm.so.6", &bad, err, sizeof err) == -1 &&
              strstr(err, "lacks symbol 'hbDNNInitializeFromFiles': not a compatible hbDNN 1.x library"),
          "%s", err);
    CHECK(bad.dl_handle == NULL, "api zeroed after failure");
    CHECK(chbdnn_load(lib, &A, err, sizeof err) == 0, "%s", err);
    CHECK(A.hbDNNRoiInfer && A.hbDNNSetTaskDoneCb && A.hbSysAllocMem, "optional symbols present");
    CHECK(strcmp(A.hbDNNGetVersion(), "standin-libdnn (test double) 1.0") == 0, "%s", A.hbDNNGetVersion());
}

typedef struct {
    const char *text;
    int luma, pad, want;
} Case;

static void test_outputs(void) {
    static const Case cases[] = {
        { "# defaults: F32 NCHW 1000 classes 224x224\n", 128, 0, 500 },
        { "", 37, 0, 144 },
        { "output = S32_SCALE\nlayout=NHWC\npad=16\n", 128, 0, 500 },
        { "output=S8_SHIFT\npad=64\ninput_stride_align=64\nwidth=220\nheight=124\n", 128, 255, 500 },
        { "output=S16_SCALE\nlayout=NHWC\ninput_stride_align=32\nwidth=100\nheight=60\n", 200, 0, 781 },
        { "output=S16_SCALE\n", 128, 0, 500 },
        { "output=S32_SCALE\nclasses=10\nname=tiny\n", 255, 0, 9 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const Case *c = &cases[k];
        Model m;
        IO io;
        CHECK(open_model(&m, c->text) == 0, "case %zu open", k);
        CHECK(io_alloc(&m, &io) == 0, "case %zu alloc", k);
        int cls = run_once(&m, &io, c->luma, c->pad, NULL);
        CHECK(cls == c->want, "case %zu: class %d, want %d", k, cls, c->want);
        int second = (c->want + 1) % m.op.validShape.dimensionSize[m.op.tensorLayout == CHBDNN_LAYOUT_NHWC ? 3 : 1];
        CHECK(g_scores[cls] > 7.99f && g_scores[cls] < 8.01f && g_scores[second] > 0.99f && g_scores[second] < 1.01f,
              "case %zu: scores %f %f", k, g_scores[cls], g_scores[second]);
        if (m.op.quantiType == CHBDNN_QUANTI_SCALE && c->want % 2 == 0) {
            float wrong[1000];
            int n = decode(&io.out.properties, io.out.sysMem[0].virAddr, wrong, 1000, 1);
            CHECK(argmax(wrong, n) != c->want, "case %zu: ignoring quantizeAxis must give a wrong class", k);
        }
        io_free(&io);
        close_model(&m);
    }
    /* Property shapes of an aligned-input / padded-output model. */
    Model m;
    CHECK(open_model(&m, "width=220\nheight=124\ninput_stride_align=64\npad=16\nlayout=NHWC\nclasses=1000\n") == 0, "open");
    CHECK(m.ip.tensorType == CHBDNN_TYPE_IMG_NV12 && m.ip.tensorLayout == CHBDNN_LAYOUT_NCHW &&
              m.ip.validShape.dimensionSize[3] == 220 && m.ip.alignedShape.dimensionSize[3] == 256 &&
              m.ip.stride[2] == 256 && m.ip.alignedByteSize == 124 * 256 * 3 / 2,
          "input props: aligned W %d stride %d bytes %d", m.ip.alignedShape.dimensionSize[3], m.ip.stride[2],
          m.ip.alignedByteSize);
    CHECK(m.op.validShape.dimensionSize[3] == 1000 && m.op.alignedShape.dimensionSize[3] == 1008 &&
              m.op.alignedByteSize == 1008 * 4 && m.op.stride[3] == 4,
          "output props");
    int32_t n = 0;
    const char *name = NULL;
    CHECK(A.hbDNNGetInputCount(&n, m.model) == 0 && n == 1, "input count");
    CHECK(A.hbDNNGetOutputName(&name, m.model, 0) == 0 && strcmp(name, "output") == 0, "output name");
    hbDNNHandle_t h;
    CHECK(A.hbDNNGetModelHandle(&h, m.packed, "no_such_model") < 0, "wrong model name");
    close_model(&m);
}

/* `inflight` tasks kept in flight for `secs`; returns completions per second. */
static double measure_fps(const char *text, int inflight, double secs) {
    Model m;
    IO io[8];
    hbDNNTaskHandle_t t[8];
    CHECK(open_model(&m, text) == 0, "open");
    for (int i = 0; i < inflight; i++) {
        CHECK(io_alloc(&m, &io[i]) == 0, "alloc");
        fill_nv12(&io[i], 128, 0, 1);
        CHECK(submit(&m, &io[i], &t[i]) == 0, "submit");
    }
    long done = 0, wrong = 0;
    double t0 = now_s(), elapsed;
    for (int i = 0; (elapsed = now_s() - t0) < secs; i = (i + 1) % inflight) {
        if (A.hbDNNWaitTaskDone(t[i], 1000) != 0) wrong++;
        A.hbDNNReleaseTask(t[i]);
        A.hbSysFlushMem(&io[i].out.sysMem[0], CHBDNN_MEM_INVALIDATE);
        if (decode(&m.op, io[i].out.sysMem[0].virAddr, g_scores, 1 << 16, 0) != 1000 || argmax(g_scores, 1000) != 500)
            wrong++;
        done++;
        A.hbSysFlushMem(&io[i].in.sysMem[0], CHBDNN_MEM_CLEAN); /* the frame is unchanged, but flush anyway */
        if (submit(&m, &io[i], &t[i]) != 0) wrong++;
    }
    for (int i = 0; i < inflight; i++) {
        A.hbDNNWaitTaskDone(t[i], 0);
        A.hbDNNReleaseTask(t[i]);
        io_free(&io[i]);
    }
    close_model(&m);
    CHECK(wrong == 0, "%ld wrong results while measuring", wrong);
    return (double)done / elapsed;
}

static void test_fps(void) {
    double fps1 = measure_fps("latency_us=3310\ncores=1\n", 4, 1.0);
    printf("FPS latency_us=3310 cores=1 4 in flight: %.1f (ideal 302.1)\n", fps1);
    double fps2 = measure_fps("latency_us=3310\ncores=2\n", 8, 0.5);
    printf("FPS latency_us=3310 cores=2 8 in flight: %.1f (ideal 604.2)\n", fps2);
    if (!g_no_timing) { /* loose lower bound: a CPU-starved host drains the queue */
        CHECK(fps1 > 0.85 * 302.1 && fps1 < 1.02 * 302.1, "fps %.1f", fps1);
        CHECK(fps2 > 0.85 * 604.2 && fps2 < 1.02 * 604.2, "fps %.1f", fps2);
    }
    CHECK(stat_of("max_active") == 8 && stat_of("max_in_flight") == 8, "max_active %ld max_in_flight %ld",
          stat_of("max_active"), stat_of("max_in_flight"));
}

static volatile int g_cb_status = 1;
static void on_done(hbDNNTaskHandle_t task, int32_t status, void *user) {
    (void)task;
    g_cb_status = status;
    __atomic_add_fetch((int *)user, 1, __ATOMIC_SEQ_CST);
}

static void test_faults(void) {
    Model m;
    IO io, io2, io3;
    hbDNNTaskHandle_t t = NULL, t2 = NULL, t3 = NULL;
    int32_t wrc;

    /* fail_infer_every=3: the 3rd infer fails, no task is created */
    CHECK(open_model(&m, "fail_infer_every=3\n") == 0, "open");
    io_alloc(&m, &io);
    CHECK(run_once(&m, &io, 128, 0, NULL) == 500 && run_once(&m, &io, 128, 0, NULL) == 500, "1st, 2nd ok");
    fill_nv12(&io, 128, 0, 1);
    CHECK(submit(&m, &io, &t) < 0 && t == NULL, "3rd infer fails");
    CHECK(run_once(&m, &io, 128, 0, NULL) == 500, "4th ok");
    io_free(&io);
    close_model(&m);

    /* timeout_every=2: the 2nd task never completes; wait times out, release works */
    CHECK(open_model(&m, "timeout_every=2\n") == 0, "open");
    io_alloc(&m, &io);
    CHECK(run_once(&m, &io, 128, 0, NULL) == 500, "1st ok");
    fill_nv12(&io, 128, 0, 1);
    CHECK(submit(&m, &io, &t) == 0, "2nd submit");
    double t0 = now_s();
    wrc = A.hbDNNWaitTaskDone(t, 50);
    CHECK(wrc == CHBDNN_DNN_TIMEOUT && now_s() - t0 > 0.045, "wait rc %d after %.3f s", wrc, now_s() - t0);
    CHECK(A.hbDNNReleaseTask(t) == 0, "release stuck task");
    CHECK(A.hbDNNWaitTaskDone(t, 10) == CHBDNN_DNN_INVALID_TASK_HANDLE, "released handle is invalid");
    CHECK(run_once(&m, &io, 128, 0, NULL) == 500, "3rd ok");
    io_free(&io);
    close_model(&m);

    /* fail_task_status_every=2: the 2nd wait returns an error status */
    CHECK(open_model(&m, "fail_task_status_every=2\n") == 0, "open");
    io_alloc(&m, &io);
    CHECK(run_once(&m, &io, 128, 0, NULL) == 500, "1st ok");
    CHECK(run_once(&m, &io, 128, 0, &wrc) < 0 && wrc == CHBDNN_DNN_RUN_TASK_FAILED, "2nd status %d", wrc);
    A.hbSysFlushMem(&io.out.sysMem[0], CHBDNN_MEM_INVALIDATE);
    io_free(&io);
    close_model(&m);

    /* fail_alloc_after=2 */
    CHECK(open_model(&m, "fail_alloc_after=2\n") == 0, "open");
    CHECK(io_alloc(&m, &io) == 0, "2 allocs ok");
    hbSysMem extra;
    CHECK(A.hbSysAllocCachedMem(&extra, 100) == CHBDNN_SYS_OUT_OF_MEMORY, "3rd alloc fails");
    io_free(&io);
    close_model(&m);

    /* max_tasks=2 with slow tasks; releasing queued/running tasks; done callback */
    CHECK(open_model(&m, "max_tasks=2\nlatency_us=20000\n") == 0, "open");
    io_alloc(&m, &io);
    io_alloc(&m, &io2);
    io_alloc(&m, &io3);
    fill_nv12(&io, 128, 0, 1);
    fill_nv12(&io2, 128, 0, 1);
    fill_nv12(&io3, 128, 0, 1);
    CHECK(submit(&m, &io, &t) == 0 && submit(&m, &io2, &t2) == 0, "2 submits");
    CHECK(submit(&m, &io3, &t3) == CHBDNN_DNN_TASK_NUM_EXCEED_LIMIT && t3 == NULL, "3rd exceeds max_tasks");
    int calls = 0;
    CHECK(A.hbDNNSetTaskDoneCb(t, on_done, &calls) == 0, "set cb");
    CHECK(A.hbDNNWaitTaskDone(t, 1000) == 0, "wait 1st");
    for (int i = 0; i < 100 && __atomic_load_n(&calls, __ATOMIC_SEQ_CST) == 0; i++) usleep(1000);
    CHECK(calls == 1 && g_cb_status == 0, "callback calls %d status %d", calls, g_cb_status);
    CHECK(A.hbDNNReleaseTask(t) == 0 && A.hbDNNReleaseTask(t2) == 0, "release running task");
    CHECK(A.hbDNNReleaseTask(t2) == CHBDNN_DNN_INVALID_TASK_HANDLE, "double release is an error");
    io_free(&io);
    io_free(&io2); /* must succeed: ReleaseTask waited for / cancelled the task */
    io_free(&io3);
    close_model(&m);

    /* bad model files and environment */
    CHECK(open_model(&m, "colour=blue\n") < 0, "unknown key");
    CHECK(open_model(&m, "output=F64\n") < 0, "bad value");
    CHECK(open_model(&m, "width=223\n") < 0, "odd width");
    const char *missing[1] = { "/nonexistent/model.bin" };
    hbPackedDNNHandle_t p = NULL;
    CHECK(A.hbDNNInitializeFromFiles(&p, missing, 1) == CHBDNN_DNN_CAN_NOT_OPEN_FILE, "missing file");
    setenv("STANDIN_DNN_BOGUS", "1", 1);
    CHECK(open_model(&m, "") < 0, "unknown STANDIN_DNN_ variable");
    unsetenv("STANDIN_DNN_BOGUS");
    setenv("STANDIN_DNN_CLASSES", "10", 1);
    CHECK(open_model(&m, "classes=1000\n") == 0 && m.op.validShape.dimensionSize[1] == 10, "env overrides file");
    unsetenv("STANDIN_DNN_CLASSES");
    io_alloc(&m, &io);
    CHECK(run_once(&m, &io, 128, 0, NULL) == 5, "10 classes, luma 128 -> 5");

    /* misuse: memory not from hbSysAllocCachedMem; input not flushed */
    long unreg = stat_of("unregistered_mem"), unflushed = stat_of("unflushed_inputs");
    IO fake = io;
    uint8_t *heap = malloc((size_t)m.ip.alignedByteSize);
    fake.in.sysMem[0].virAddr = heap;
    CHECK(submit(&m, &fake, &t) < 0 && stat_of("unregistered_mem") == unreg + 1, "unregistered input memory");
    free(heap);
    fill_nv12(&io, 128, 0, 0); /* no CLEAN */
    CHECK(submit(&m, &io, &t) == 0 && A.hbDNNWaitTaskDone(t, 0) == 0 && A.hbDNNReleaseTask(t) == 0, "run");
    CHECK(stat_of("unflushed_inputs") == unflushed + 1, "unflushed input counted");
    A.hbSysFlushMem(&io.out.sysMem[0], CHBDNN_MEM_INVALIDATE);
    io_free(&io);
    close_model(&m);
}

static void test_stats_file(void) {
    char path[128], buf[4096] = "";
    snprintf(path, sizeof path, "%s/stats.json", g_dir);
    setenv("STANDIN_DNN_STATS_FILE", path, 1);
    Model m;
    CHECK(open_model(&m, "") == 0, "open");
    unsetenv("STANDIN_DNN_STATS_FILE");
    close_model(&m);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(buf, sizeof buf, f) && strstr(buf, "\"models_released\":"), "stats file: %s", buf);
    if (f) fclose(f);
    CHECK(stat_of("tasks_created") == stat_of("tasks_released") && stat_of("in_flight") == 0 &&
              stat_of("active") == 0 && stat_of("allocs_live") == 0 && stat_of("tasks_unreleased_at_model_release") == 0,
          "balanced stats");
    printf("stats: %s", buf);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/libdnn.so [--no-timing]\n", argv[0]);
        return 2;
    }
    g_no_timing = argc > 2 && strcmp(argv[2], "--no-timing") == 0;
    if (mkdtemp(g_dir) == NULL) return 2;
    test_loader(argv[1]);
    if (A.dl_handle != NULL) {
        test_outputs();
        test_fps();
        test_faults();
        test_stats_file();
    }
    chbdnn_unload(&A); /* the stand-in writes the stats file once more here */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail == 0 ? 0 : 1;
}
