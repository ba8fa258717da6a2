/*
 * loader.c - resolve the hbDNN 1.x functions from libdnn.so at run time.
 * See include/CHBDNN.h.
 */
#include "CHBDNN.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* One entry per function: its exported name, where its pointer goes inside
 * chbdnn_api, and whether a missing symbol is fatal. */
typedef struct {
    const char *name;
    size_t offset;
    int required;
} chbdnn_sym;

/* chbdnn_api is the handle followed by function pointers only. */
_Static_assert(sizeof(chbdnn_api) == sizeof(void *) * 21, "chbdnn_api: one handle + 20 functions");

#define CHBDNN_SYM(fn, req) { #fn, offsetof(chbdnn_api, fn), req }

static const chbdnn_sym chbdnn_syms[] = {
    CHBDNN_SYM(hbDNNInitializeFromFiles, 1),
    CHBDNN_SYM(hbDNNRelease, 1),
    CHBDNN_SYM(hbDNNGetModelNameList, 1),
    CHBDNN_SYM(hbDNNGetModelHandle, 1),
    CHBDNN_SYM(hbDNNGetInputCount, 1),
    CHBDNN_SYM(hbDNNGetOutputCount, 1),
    CHBDNN_SYM(hbDNNGetInputName, 1),
    CHBDNN_SYM(hbDNNGetOutputName, 1),
    CHBDNN_SYM(hbDNNGetInputTensorProperties, 1),
    CHBDNN_SYM(hbDNNGetOutputTensorProperties, 1),
    CHBDNN_SYM(hbDNNInfer, 1),
    CHBDNN_SYM(hbDNNWaitTaskDone, 1),
    CHBDNN_SYM(hbDNNReleaseTask, 1),
    CHBDNN_SYM(hbDNNGetVersion, 1),
    CHBDNN_SYM(hbSysAllocCachedMem, 1),
    CHBDNN_SYM(hbSysFlushMem, 1),
    CHBDNN_SYM(hbSysFreeMem, 1),
    CHBDNN_SYM(hbDNNRoiInfer, 0),
    CHBDNN_SYM(hbDNNSetTaskDoneCb, 0),
    CHBDNN_SYM(hbSysAllocMem, 0),
};

int chbdnn_load(const char *path, chbdnn_api *api, char *err, size_t errlen) {
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (api == NULL || path == NULL) {
        set_err(err, errlen, "chbdnn_load: invalid argument (%s is NULL)",
                api == NULL ? "api" : "path");
        return -1;
    }
    memset(api, 0, sizeof *api);

    dlerror(); /* clear any stale error */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *why = dlerror();
        set_err(err, errlen,
                "libdnn.so not found at '%s' (%s): this backend runs on an RDK board "
                "with the hobot-dnn package installed",
                path, why != NULL ? why : "unknown dlopen error");
        return -1;
    }

    for (size_t i = 0; i < sizeof chbdnn_syms / sizeof chbdnn_syms[0]; i++) {
        const chbdnn_sym *s = &chbdnn_syms[i];
        dlerror();
        void *p = dlsym(h, s->name);
        if (p == NULL && s->required) {
            set_err(err, errlen,
                    "libdnn.so at '%s' lacks symbol '%s': not a compatible hbDNN 1.x library",
                    path, s->name);
            dlclose(h);
            memset(api, 0, sizeof *api);
            return -1;
        }
        /* Every field is a function pointer of the same size; POSIX
         * guarantees that void * from dlsym converts to one. */
        memcpy((char *)api + s->offset, &p, sizeof p);
    }
    api->dl_handle = h;
    return 0;
}

void chbdnn_unload(chbdnn_api *api) {
    if (api == NULL) return;
    if (api->dl_handle != NULL) dlclose(api->dl_handle);
    memset(api, 0, sizeof *api);
}
