/*
 * CHBDNN.h - camclassd's own declaration of the subset of the hbDNN 1.x C ABI
 * (the RDK X3/X5 BPU runtime, libdnn.so) that the BPU backend uses, plus a
 * small run-time loader (dlopen + dlsym) so that nothing links against
 * libdnn.so at build time.
 *
 * Written from the project's ABI notes (shared/reference/hbdnn-abi.md); no
 * vendor header was used. Every struct size and field offset given in those
 * notes is checked below with _Static_assert, so a wrong declaration fails to
 * compile (here, and in the test double Tests/StandIns/standin_libdnn.c which
 * includes this header and defines the functions with these exact types).
 *
 * Layout: LP64 (aarch64, x86_64), natural alignment.
 *
 * Usage (C; Swift is the same through the imported struct):
 *     chbdnn_api api;
 *     char err[512];
 *     if (chbdnn_load("libdnn.so", &api, err, sizeof err) != 0) { report(err); }
 *     api.hbDNNInitializeFromFiles(&packed, files, 1);
 *     ...
 *     chbdnn_unload(&api);
 *
 * Everything Swift needs is a type, a `static const` constant or a function:
 * there are no macros to rely on.
 */
#ifndef CHBDNN_H
#define CHBDNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */
/* ------------------------------------------------------------------------ */

/** A loaded .bin file (may hold several models). */
typedef void *hbPackedDNNHandle_t;
/** One model inside a packed handle. */
typedef void *hbDNNHandle_t;
/** One submitted inference. */
typedef void *hbDNNTaskHandle_t;

/* ------------------------------------------------------------------------ */
/* Constants (all int32 on the wire)                                         */
/* ------------------------------------------------------------------------ */

static const int32_t CHBDNN_TENSOR_MAX_DIMS = 8;   /* dimensionSize[], stride[] */
static const int32_t CHBDNN_TENSOR_MAX_MEMS = 4;   /* hbDNNTensor.sysMem[] */

/* tensorLayout */
static const int32_t CHBDNN_LAYOUT_NHWC = 0;
static const int32_t CHBDNN_LAYOUT_NCHW = 2;
static const int32_t CHBDNN_LAYOUT_NONE = 255;

/* tensorType (hbDNNDataType) */
static const int32_t CHBDNN_TYPE_IMG_Y = 0;
static const int32_t CHBDNN_TYPE_IMG_NV12 = 1;
static const int32_t CHBDNN_TYPE_IMG_NV12_SEPARATE = 2;
static const int32_t CHBDNN_TYPE_IMG_YUV444 = 3;
static const int32_t CHBDNN_TYPE_IMG_RGB = 4;
static const int32_t CHBDNN_TYPE_IMG_BGR = 5;
static const int32_t CHBDNN_TYPE_S4 = 6;
static const int32_t CHBDNN_TYPE_U4 = 7;
static const int32_t CHBDNN_TYPE_S8 = 8;
static const int32_t CHBDNN_TYPE_U8 = 9;
static const int32_t CHBDNN_TYPE_F16 = 10;
static const int32_t CHBDNN_TYPE_S16 = 11;
static const int32_t CHBDNN_TYPE_U16 = 12;
static const int32_t CHBDNN_TYPE_F32 = 13;
static const int32_t CHBDNN_TYPE_S32 = 14;
static const int32_t CHBDNN_TYPE_U32 = 15;
static const int32_t CHBDNN_TYPE_F64 = 16;
static const int32_t CHBDNN_TYPE_S64 = 17;
static const int32_t CHBDNN_TYPE_U64 = 18;

/* quantiType. Dequantize SCALE: x * scale[i]  (or (x - zp[i]) * scale[i] when
 * zeroPointLen > 0); SHIFT: x / 2^shift[i]; i runs along quantizeAxis. */
static const int32_t CHBDNN_QUANTI_NONE = 0;
static const int32_t CHBDNN_QUANTI_SHIFT = 1;
static const int32_t CHBDNN_QUANTI_SCALE = 2;

/* hbDNNInferCtrlParam.bpuCoreId */
static const int32_t CHBDNN_CORE_ANY = 0;
static const int32_t CHBDNN_CORE_0 = 1;
static const int32_t CHBDNN_CORE_1 = 2;

/* hbDNNInferCtrlParam.priority: 0 lowest ... 255 highest (pre-empting) */
static const int32_t CHBDNN_PRIORITY_LOWEST = 0;
static const int32_t CHBDNN_PRIORITY_HIGHEST = 255;

/* hbSysFlushMem flag */
static const int32_t CHBDNN_MEM_INVALIDATE = 1; /* BPU wrote -> before CPU reads */
static const int32_t CHBDNN_MEM_CLEAN = 2;      /* CPU wrote -> before BPU reads */

/* Status: 0 is success, errors are negative; report the number together
 * with the call that returned it. The two hbSys* values are from our ABI
 * notes; the hbDNN* values are from the public D-Robotics error-code table
 * (the "model inference debug" page, -6000001 ... -6000016). Treat any other non-zero value
 * as an opaque error. */
static const int32_t CHBDNN_SUCCESS = 0;
static const int32_t CHBDNN_DNN_INVALID_ARGUMENT = -6000001;
static const int32_t CHBDNN_DNN_INVALID_MODEL = -6000002;
static const int32_t CHBDNN_DNN_MODEL_NUMBER_EXCEED_LIMIT = -6000003;
static const int32_t CHBDNN_DNN_INVALID_PACKED_DNN_HANDLE = -6000004;
static const int32_t CHBDNN_DNN_INVALID_DNN_HANDLE = -6000005;
static const int32_t CHBDNN_DNN_CAN_NOT_OPEN_FILE = -6000006;
static const int32_t CHBDNN_DNN_OUT_OF_MEMORY = -6000007;
static const int32_t CHBDNN_DNN_TIMEOUT = -6000008;             /* hbDNNWaitTaskDone */
static const int32_t CHBDNN_DNN_TASK_NUM_EXCEED_LIMIT = -6000009;
static const int32_t CHBDNN_DNN_TASK_BATCH_SIZE_EXCEED_LIMIT = -6000010;
static const int32_t CHBDNN_DNN_INVALID_TASK_HANDLE = -6000011;
static const int32_t CHBDNN_DNN_RUN_TASK_FAILED = -6000012;
static const int32_t CHBDNN_DNN_MODEL_IS_RUNNING = -6000013;
static const int32_t CHBDNN_DNN_INCOMPATIBLE_MODEL = -6000014;
static const int32_t CHBDNN_DNN_API_USE_ERROR = -6000015;
static const int32_t CHBDNN_DNN_MULTI_PROGRESS_USE_ERROR = -6000016;
static const int32_t CHBDNN_SYS_INVALID_ARGUMENT = -6000129;
static const int32_t CHBDNN_SYS_OUT_OF_MEMORY = -6000130;

/* ------------------------------------------------------------------------ */
/* Structs                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct hbSysMem {
    uint64_t phyAddr;
    void *virAddr;
    uint32_t memSize;
    /* 4 bytes tail padding */
} hbSysMem;

typedef struct hbDNNTensorShape {
    int32_t dimensionSize[8];
    int32_t numDimensions;
} hbDNNTensorShape;

typedef struct hbDNNQuantiShift {
    int32_t shiftLen;
    uint8_t *shiftData;
} hbDNNQuantiShift;

typedef struct hbDNNQuantiScale {
    int32_t scaleLen;
    float *scaleData;
    int32_t zeroPointLen;
    /* Some later 1.x headers type this as int32_t *; the layout is the same.
     * Read zero points defensively. */
    int8_t *zeroPointData;
} hbDNNQuantiScale;

typedef struct hbDNNTensorProperties {
    hbDNNTensorShape validShape;
    hbDNNTensorShape alignedShape;
    int32_t tensorLayout;   /* CHBDNN_LAYOUT_* */
    int32_t tensorType;     /* CHBDNN_TYPE_* */
    hbDNNQuantiShift shift;
    hbDNNQuantiScale scale;
    int32_t quantiType;     /* CHBDNN_QUANTI_* */
    int32_t quantizeAxis;
    int32_t alignedByteSize;
    int32_t stride[8];      /* bytes per step along each dimension */
    /* 4 bytes tail padding */
} hbDNNTensorProperties;

typedef struct hbDNNTensor {
    hbSysMem sysMem[4];
    hbDNNTensorProperties properties;
} hbDNNTensor;

typedef struct hbDNNInferCtrlParam {
    int32_t bpuCoreId;      /* CHBDNN_CORE_* */
    int32_t dspCoreId;
    int32_t priority;       /* 0..255 */
    int32_t more;
    int64_t customId;
    int32_t reserved1;
    int32_t reserved2;
} hbDNNInferCtrlParam;

/** Region of interest, inclusive corners (hbDNNRoiInfer). */
typedef struct hbDNNRoi {
    int32_t left;
    int32_t top;
    int32_t right;
    int32_t bottom;
} hbDNNRoi;

/* ---- ABI checks (sizes and offsets from the reference notes) ----------- */
_Static_assert(sizeof(void *) == 8, "CHBDNN: LP64 only");

_Static_assert(sizeof(hbSysMem) == 24, "hbSysMem size");
_Static_assert(offsetof(hbSysMem, phyAddr) == 0, "hbSysMem.phyAddr");
_Static_assert(offsetof(hbSysMem, virAddr) == 8, "hbSysMem.virAddr");
_Static_assert(offsetof(hbSysMem, memSize) == 16, "hbSysMem.memSize");

_Static_assert(sizeof(hbDNNTensorShape) == 36, "hbDNNTensorShape size");
_Static_assert(offsetof(hbDNNTensorShape, dimensionSize) == 0, "hbDNNTensorShape.dimensionSize");
_Static_assert(offsetof(hbDNNTensorShape, numDimensions) == 32, "hbDNNTensorShape.numDimensions");

_Static_assert(sizeof(hbDNNQuantiShift) == 16, "hbDNNQuantiShift size");
_Static_assert(offsetof(hbDNNQuantiShift, shiftLen) == 0, "hbDNNQuantiShift.shiftLen");
_Static_assert(offsetof(hbDNNQuantiShift, shiftData) == 8, "hbDNNQuantiShift.shiftData");

_Static_assert(sizeof(hbDNNQuantiScale) == 32, "hbDNNQuantiScale size");
_Static_assert(offsetof(hbDNNQuantiScale, scaleLen) == 0, "hbDNNQuantiScale.scaleLen");
_Static_assert(offsetof(hbDNNQuantiScale, scaleData) == 8, "hbDNNQuantiScale.scaleData");
_Static_assert(offsetof(hbDNNQuantiScale, zeroPointLen) == 16, "hbDNNQuantiScale.zeroPointLen");
_Static_assert(offsetof(hbDNNQuantiScale, zeroPointData) == 24, "hbDNNQuantiScale.zeroPointData");

_Static_assert(sizeof(hbDNNTensorProperties) == 176, "hbDNNTensorProperties size");
_Static_assert(offsetof(hbDNNTensorProperties, validShape) == 0, "validShape");
_Static_assert(offsetof(hbDNNTensorProperties, alignedShape) == 36, "alignedShape");
_Static_assert(offsetof(hbDNNTensorProperties, tensorLayout) == 72, "tensorLayout");
_Static_assert(offsetof(hbDNNTensorProperties, tensorType) == 76, "tensorType");
_Static_assert(offsetof(hbDNNTensorProperties, shift) == 80, "shift");
_Static_assert(offsetof(hbDNNTensorProperties, scale) == 96, "scale");
_Static_assert(offsetof(hbDNNTensorProperties, quantiType) == 128, "quantiType");
_Static_assert(offsetof(hbDNNTensorProperties, quantizeAxis) == 132, "quantizeAxis");
_Static_assert(offsetof(hbDNNTensorProperties, alignedByteSize) == 136, "alignedByteSize");
_Static_assert(offsetof(hbDNNTensorProperties, stride) == 140, "stride");

_Static_assert(sizeof(hbDNNTensor) == 272, "hbDNNTensor size");
_Static_assert(offsetof(hbDNNTensor, sysMem) == 0, "hbDNNTensor.sysMem");
_Static_assert(offsetof(hbDNNTensor, properties) == 96, "hbDNNTensor.properties");

_Static_assert(sizeof(hbDNNInferCtrlParam) == 32, "hbDNNInferCtrlParam size");
_Static_assert(offsetof(hbDNNInferCtrlParam, bpuCoreId) == 0, "bpuCoreId");
_Static_assert(offsetof(hbDNNInferCtrlParam, dspCoreId) == 4, "dspCoreId");
_Static_assert(offsetof(hbDNNInferCtrlParam, priority) == 8, "priority");
_Static_assert(offsetof(hbDNNInferCtrlParam, more) == 12, "more");
_Static_assert(offsetof(hbDNNInferCtrlParam, customId) == 16, "customId");
_Static_assert(offsetof(hbDNNInferCtrlParam, reserved1) == 24, "reserved1");
_Static_assert(offsetof(hbDNNInferCtrlParam, reserved2) == 28, "reserved2");

_Static_assert(sizeof(hbDNNRoi) == 16, "hbDNNRoi size");
_Static_assert(offsetof(hbDNNRoi, left) == 0, "hbDNNRoi.left");
_Static_assert(offsetof(hbDNNRoi, top) == 4, "hbDNNRoi.top");
_Static_assert(offsetof(hbDNNRoi, right) == 8, "hbDNNRoi.right");
_Static_assert(offsetof(hbDNNRoi, bottom) == 12, "hbDNNRoi.bottom");

/* ------------------------------------------------------------------------ */
/* Functions: for each, a function type `chbdnn_<name>_t` (lets an          */
/* implementation declare itself with `chbdnn_<name>_t <name>;` so the      */
/* compiler checks its definition) and a pointer type `chbdnn_<name>_fn`.   */
/* All return an int32 status (0 = success, negative = error) unless noted. */
/* ------------------------------------------------------------------------ */

/** Task-done callback for hbDNNSetTaskDoneCb. */
typedef void (*chbdnn_task_done_cb)(hbDNNTaskHandle_t task, int32_t status, void *userdata);

/* Load `count` model files into one packed handle. */
typedef int32_t chbdnn_hbDNNInitializeFromFiles_t(hbPackedDNNHandle_t *packedHandle,
                                                  const char **modelFileNames, int32_t count);
/* Free a packed handle and everything it owns. */
typedef int32_t chbdnn_hbDNNRelease_t(hbPackedDNNHandle_t packedHandle);
/* *names points into memory owned by the packed handle. */
typedef int32_t chbdnn_hbDNNGetModelNameList_t(const char ***modelNameList, int32_t *modelNameCount,
                                               hbPackedDNNHandle_t packedHandle);
typedef int32_t chbdnn_hbDNNGetModelHandle_t(hbDNNHandle_t *dnnHandle, hbPackedDNNHandle_t packedHandle,
                                             const char *modelName);
typedef int32_t chbdnn_hbDNNGetInputCount_t(int32_t *inputCount, hbDNNHandle_t dnnHandle);
typedef int32_t chbdnn_hbDNNGetOutputCount_t(int32_t *outputCount, hbDNNHandle_t dnnHandle);
typedef int32_t chbdnn_hbDNNGetInputName_t(const char **name, hbDNNHandle_t dnnHandle, int32_t inputIndex);
typedef int32_t chbdnn_hbDNNGetOutputName_t(const char **name, hbDNNHandle_t dnnHandle, int32_t outputIndex);
/* The pointers inside the returned properties (scale/shift arrays) are owned
 * by the model and stay valid until hbDNNRelease. */
typedef int32_t chbdnn_hbDNNGetInputTensorProperties_t(hbDNNTensorProperties *properties,
                                                       hbDNNHandle_t dnnHandle, int32_t inputIndex);
typedef int32_t chbdnn_hbDNNGetOutputTensorProperties_t(hbDNNTensorProperties *properties,
                                                        hbDNNHandle_t dnnHandle, int32_t outputIndex);
/* *task must be NULL on entry. `output` points to a pointer to the array of
 * output tensors (sysMem allocated by the caller); `input` is the array of
 * input tensors. Every successful call must be followed by hbDNNReleaseTask. */
typedef int32_t chbdnn_hbDNNInfer_t(hbDNNTaskHandle_t *task, hbDNNTensor **output,
                                    const hbDNNTensor *input, hbDNNHandle_t dnnHandle,
                                    hbDNNInferCtrlParam *inferCtrlParam);
/* For models compiled with a resizer input: the BPU crops and scales. */
typedef int32_t chbdnn_hbDNNRoiInfer_t(hbDNNTaskHandle_t *task, hbDNNTensor **output,
                                       const hbDNNTensor *input, hbDNNRoi *rois, int32_t roiCount,
                                       hbDNNHandle_t dnnHandle, hbDNNInferCtrlParam *inferCtrlParam);
typedef int32_t chbdnn_hbDNNSetTaskDoneCb_t(hbDNNTaskHandle_t task, chbdnn_task_done_cb cb,
                                            void *userdata);
/* timeoutMs <= 0 waits forever. Returns the task's status once done. */
typedef int32_t chbdnn_hbDNNWaitTaskDone_t(hbDNNTaskHandle_t task, int32_t timeoutMs);
typedef int32_t chbdnn_hbDNNReleaseTask_t(hbDNNTaskHandle_t task);
/* Returns a static string (not a status). */
typedef const char *chbdnn_hbDNNGetVersion_t(void);
typedef int32_t chbdnn_hbSysAllocMem_t(hbSysMem *mem, uint32_t size);
typedef int32_t chbdnn_hbSysAllocCachedMem_t(hbSysMem *mem, uint32_t size);
/* flag: CHBDNN_MEM_CLEAN after CPU writes, CHBDNN_MEM_INVALIDATE before CPU reads. */
typedef int32_t chbdnn_hbSysFlushMem_t(hbSysMem *mem, int32_t flag);
typedef int32_t chbdnn_hbSysFreeMem_t(hbSysMem *mem);

typedef chbdnn_hbDNNInitializeFromFiles_t *chbdnn_hbDNNInitializeFromFiles_fn;
typedef chbdnn_hbDNNRelease_t *chbdnn_hbDNNRelease_fn;
typedef chbdnn_hbDNNGetModelNameList_t *chbdnn_hbDNNGetModelNameList_fn;
typedef chbdnn_hbDNNGetModelHandle_t *chbdnn_hbDNNGetModelHandle_fn;
typedef chbdnn_hbDNNGetInputCount_t *chbdnn_hbDNNGetInputCount_fn;
typedef chbdnn_hbDNNGetOutputCount_t *chbdnn_hbDNNGetOutputCount_fn;
typedef chbdnn_hbDNNGetInputName_t *chbdnn_hbDNNGetInputName_fn;
typedef chbdnn_hbDNNGetOutputName_t *chbdnn_hbDNNGetOutputName_fn;
typedef chbdnn_hbDNNGetInputTensorProperties_t *chbdnn_hbDNNGetInputTensorProperties_fn;
typedef chbdnn_hbDNNGetOutputTensorProperties_t *chbdnn_hbDNNGetOutputTensorProperties_fn;
typedef chbdnn_hbDNNInfer_t *chbdnn_hbDNNInfer_fn;
typedef chbdnn_hbDNNRoiInfer_t *chbdnn_hbDNNRoiInfer_fn;
typedef chbdnn_hbDNNSetTaskDoneCb_t *chbdnn_hbDNNSetTaskDoneCb_fn;
typedef chbdnn_hbDNNWaitTaskDone_t *chbdnn_hbDNNWaitTaskDone_fn;
typedef chbdnn_hbDNNReleaseTask_t *chbdnn_hbDNNReleaseTask_fn;
typedef chbdnn_hbDNNGetVersion_t *chbdnn_hbDNNGetVersion_fn;
typedef chbdnn_hbSysAllocMem_t *chbdnn_hbSysAllocMem_fn;
typedef chbdnn_hbSysAllocCachedMem_t *chbdnn_hbSysAllocCachedMem_fn;
typedef chbdnn_hbSysFlushMem_t *chbdnn_hbSysFlushMem_fn;
typedef chbdnn_hbSysFreeMem_t *chbdnn_hbSysFreeMem_fn;

/* ------------------------------------------------------------------------ */
/* Loader                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * The resolved library: one pointer per function, named like the function.
 *
 * Required (chbdnn_load fails if any is missing): every field except the
 * three marked optional. Optional ones are NULL when the library lacks them
 * (they are not imported by the vendor's own Python binding, so an older
 * libdnn may not export them); the backend does not need them.
 */
typedef struct chbdnn_api {
    void *dl_handle; /* from dlopen; owned; closed by chbdnn_unload */

    chbdnn_hbDNNInitializeFromFiles_fn hbDNNInitializeFromFiles;
    chbdnn_hbDNNRelease_fn hbDNNRelease;
    chbdnn_hbDNNGetModelNameList_fn hbDNNGetModelNameList;
    chbdnn_hbDNNGetModelHandle_fn hbDNNGetModelHandle;
    chbdnn_hbDNNGetInputCount_fn hbDNNGetInputCount;
    chbdnn_hbDNNGetOutputCount_fn hbDNNGetOutputCount;
    chbdnn_hbDNNGetInputName_fn hbDNNGetInputName;
    chbdnn_hbDNNGetOutputName_fn hbDNNGetOutputName;
    chbdnn_hbDNNGetInputTensorProperties_fn hbDNNGetInputTensorProperties;
    chbdnn_hbDNNGetOutputTensorProperties_fn hbDNNGetOutputTensorProperties;
    chbdnn_hbDNNInfer_fn hbDNNInfer;
    chbdnn_hbDNNWaitTaskDone_fn hbDNNWaitTaskDone;
    chbdnn_hbDNNReleaseTask_fn hbDNNReleaseTask;
    chbdnn_hbDNNGetVersion_fn hbDNNGetVersion;
    chbdnn_hbSysAllocCachedMem_fn hbSysAllocCachedMem;
    chbdnn_hbSysFlushMem_fn hbSysFlushMem;
    chbdnn_hbSysFreeMem_fn hbSysFreeMem;

    chbdnn_hbDNNRoiInfer_fn hbDNNRoiInfer;         /* optional */
    chbdnn_hbDNNSetTaskDoneCb_fn hbDNNSetTaskDoneCb; /* optional */
    chbdnn_hbSysAllocMem_fn hbSysAllocMem;         /* optional */
} chbdnn_api;

/**
 * dlopen(path, RTLD_NOW | RTLD_LOCAL) and resolve every function into *api.
 * `path` is passed to dlopen as is: a bare "libdnn.so" uses the loader's
 * search path, anything with a '/' is a file path.
 *
 * Returns 0 on success. On failure returns -1, leaves *api zeroed (nothing
 * stays open) and writes one NUL-terminated message into err (if err is not
 * NULL and errlen > 0; truncated to errlen), either
 *   libdnn.so not found at '<path>' (<dlerror>): this backend runs on an RDK
 *   board with the hobot-dnn package installed
 * or
 *   libdnn.so at '<path>' lacks symbol '<name>': not a compatible hbDNN 1.x
 *   library
 * (or "invalid argument" text when path or api is NULL).
 */
int chbdnn_load(const char *path, chbdnn_api *api, char *err, size_t errlen);

/** dlclose the library (if open) and zero *api. Safe on a zeroed struct. */
void chbdnn_unload(chbdnn_api *api);

#ifdef __cplusplus
}
#endif

#endif /* CHBDNN_H */
