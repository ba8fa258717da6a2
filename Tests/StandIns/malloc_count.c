/*
 * malloc_count.so — a test double for the allocator (LD_PRELOAD), used to check that camclassd's
 * hot-path threads allocate nothing per frame. It forwards every allocation to glibc and counts
 * it per thread name (the daemon names its threads "camclass-…"), split by who asked: the
 * program's own code ("own": the first caller outside libc, libstdc++ and the Swift runtime lies
 * in the main executable) or a library it calls into ("lib": libyuv, OpenVINO, …). Threads not
 * named camclass-… are counted without attribution (as "lib").
 * At exit it writes {"<thread>.own": n, "<thread>.lib": n, …} to $MALLOC_COUNT_FILE, only from
 * the program named by $MALLOC_COUNT_PROCESS when that is set.
 *
 *   cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define SLOTS 256
static struct { char name[24]; unsigned long count; } table[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int inside;
static unsigned long exe_lo, exe_hi; /* the main program's mapped address range */

/* Libraries that allocate on behalf of their caller: look past them to find who asked. */
static int is_runtime(const char *path) {
    static const char *names[] = {"malloc_count", "libc.so", "libstdc++", "libswiftCore", "libswift_Concurrency",
                                  "libswiftSynchronization", "libdispatch", "libFoundation", "libswiftDispatch",
                                  "libswift_StringProcessing", NULL};
    for (int i = 0; names[i]; i++) if (strstr(path, names[i])) return 1;
    return 0;
}

static void count_one(void) {
    if (inside) return;
    inside = 1;
    char name[24] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    const char *who = "lib";
    void *frames[24];
    /* Attribution (a backtrace per allocation) only where it is asserted on: the daemon's pipeline
     * threads. Model loading alone makes ~10^6 allocations on other threads. */
    int attribute = strncmp(name, "camclass-", 9) == 0 && strcmp(name, "camclass-load") != 0;
    int n = attribute ? backtrace(frames, 24) : 0;
    for (int i = 1; i < n; i++) {
        unsigned long a = (unsigned long)frames[i];
        if (a >= exe_lo && a < exe_hi) { who = "own"; break; }
        Dl_info info;
        if (dladdr(frames[i], &info) == 0 || info.dli_fname == NULL) continue;
        if (is_runtime(info.dli_fname)) continue;
        break;
    }
    strncat(name, who[0] == 'o' ? ".own" : ".lib", sizeof name - strlen(name) - 1);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < SLOTS; i++) {
        if (table[i].name[0] == 0) { memcpy(table[i].name, name, sizeof name); table[i].count = 1; break; }
        if (strcmp(table[i].name, name) == 0) { table[i].count++; break; }
    }
    pthread_mutex_unlock(&lock);
    inside = 0;
}

static int find_exe(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size; (void)data;
    if (info->dlpi_name != NULL && info->dlpi_name[0] != 0) return 0; /* "" is the main program */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        unsigned long lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (exe_lo == 0 || lo < exe_lo) exe_lo = lo;
        if (hi > exe_hi) exe_hi = hi;
    }
    return 1;
}

__attribute__((constructor)) static void init(void) {
    inside = 1;
    void *frames[1];
    backtrace(frames, 1); /* loads libgcc_s once, before counting starts */
    dl_iterate_phdr(find_exe, NULL);
    inside = 0;
}

void *malloc(size_t n) { count_one(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count_one(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count_one(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { count_one(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count_one(); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    count_one();
    void *p = __libc_memalign(a, n);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

__attribute__((destructor)) static void report(void) {
    inside = 1;
    const char *path = getenv("MALLOC_COUNT_FILE");
    const char *only = getenv("MALLOC_COUNT_PROCESS");
    if (path == NULL) return;
    if (only != NULL) {
        char comm[32] = {0};
        FILE *c = fopen("/proc/self/comm", "r");
        if (c != NULL) { if (fgets(comm, sizeof comm, c) == NULL) comm[0] = 0; fclose(c); }
        comm[strcspn(comm, "\n")] = 0;
        if (strcmp(comm, only) != 0) return;
    }
    FILE *f = fopen(path, "w");
    if (f == NULL) return;
    fputc('{', f);
    for (int i = 0; i < SLOTS && table[i].name[0]; i++)
        fprintf(f, "%s\"%s\":%lu", i ? "," : "", table[i].name, table[i].count);
    fputs("}\n", f);
    fclose(f);
}
