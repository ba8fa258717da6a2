#include "jpeg_region.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h uses FILE and size_t without including them */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <libyuv.h>

/* TurboJPEG's limit (TJFLAG_LIMITSCANS): a small file with many progressive scans costs minutes. */
enum { MAX_SCANS = 500, MAX_CHUNK_ROWS = 16 };

struct camclass_jpeg_region_decoder {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf escape; /* where error_exit returns to: set by each entry point before calling libjpeg */
    int live;       /* cinfo holds a created decompressor */
    char message[JMSG_LENGTH_MAX + 80];
};

static void on_error(j_common_ptr cinfo) {
    camclass_jpeg_region_decoder *d = cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, d->message);
    longjmp(d->escape, 1);
}

/* A warning (level < 0) means damaged data: treated as an error, like TurboJPEG's
 * TJFLAG_STOPONWARNING, so a corrupt frame is dropped instead of classified. Trace messages are
 * ignored. */
static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) on_error(cinfo);
}

static void on_progress(j_common_ptr cinfo) {
    camclass_jpeg_region_decoder *d = cinfo->client_data;
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > MAX_SCANS) {
        snprintf(d->message, sizeof d->message, "progressive JPEG with more than %d scans", MAX_SCANS);
        longjmp(d->escape, 1);
    }
}

/* A new decompressor. After a failure the old one is replaced instead of reused: one bad frame must
 * not leave state that spoils the next good one. */
static int renew(camclass_jpeg_region_decoder *d) {
    if (d->live) jpeg_destroy_decompress(&d->cinfo);
    d->live = 0;
    memset(&d->cinfo, 0, sizeof d->cinfo);
    d->cinfo.err = jpeg_std_error(&d->err);
    d->err.error_exit = on_error;
    d->err.emit_message = on_message;
    d->cinfo.client_data = d; /* kept by jpeg_create_decompress */
    if (setjmp(d->escape)) return -1;
    jpeg_create_decompress(&d->cinfo);
    d->progress.progress_monitor = on_progress;
    d->cinfo.progress = &d->progress;
    d->live = 1;
    return 0;
}

static int fail(camclass_jpeg_region_decoder *d) {
    char saved[sizeof d->message];
    memcpy(saved, d->message, sizeof saved);
    if (renew(d) != 0) {
        snprintf(d->message, sizeof d->message, "%.200s (and the decoder could not be reset: out of memory)", saved);
        return -1;
    }
    memcpy(d->message, saved, sizeof saved);
    return -1;
}

camclass_jpeg_region_decoder *camclass_jpeg_region_create(void) {
    camclass_jpeg_region_decoder *d = calloc(1, sizeof *d);
    if (d == NULL) return NULL;
    if (renew(d) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

void camclass_jpeg_region_destroy(camclass_jpeg_region_decoder *d) {
    if (d == NULL) return;
    if (d->live) jpeg_destroy_decompress(&d->cinfo);
    free(d);
}

const char *camclass_jpeg_region_message(const camclass_jpeg_region_decoder *d) { return d->message; }

int camclass_jpeg_region_header(camclass_jpeg_region_decoder *d, const uint8_t *data, size_t size,
                                camclass_jpeg_header *header) {
    if (!d->live && renew(d) != 0) return -1;
    if (setjmp(d->escape)) return fail(d);
    jpeg_mem_src(&d->cinfo, data, (unsigned long)size);
    jpeg_read_header(&d->cinfo, TRUE);
    header->width = (int)d->cinfo.image_width;
    header->height = (int)d->cinfo.image_height;
    header->components = d->cinfo.num_components;
    header->color_space = (int)d->cinfo.jpeg_color_space;
    header->progressive = d->cinfo.progressive_mode ? 1 : 0;
    jpeg_abort_decompress(&d->cinfo);
    return 0;
}

static int refuse(camclass_jpeg_region_decoder *d, const char *why) {
    snprintf(d->message, sizeof d->message, "%s", why);
    jpeg_abort_decompress(&d->cinfo);
    return -1;
}

int camclass_jpeg_region_decode(camclass_jpeg_region_decoder *d, const uint8_t *data, size_t size,
                                const camclass_jpeg_region *r) {
    if (!d->live && renew(d) != 0) return -1;
    struct jpeg_decompress_struct *cinfo = &d->cinfo;
    if (setjmp(d->escape)) return fail(d);
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    int gray = cinfo->num_components == 1 && cinfo->jpeg_color_space == JCS_GRAYSCALE;
    if (!gray && !(cinfo->num_components == 3 && cinfo->jpeg_color_space == JCS_YCbCr))
        return refuse(d, "unsupported JPEG colour space (neither YCbCr nor grayscale)");
    if (r->denominator != 1 && r->denominator != 2 && r->denominator != 4 && r->denominator != 8)
        return refuse(d, "DCT scaling must be 1/1, 1/2, 1/4 or 1/8");
    cinfo->scale_num = 1;
    cinfo->scale_denom = (unsigned int)r->denominator;
    cinfo->out_color_space = gray ? JCS_GRAYSCALE : JCS_YCbCr;
    /* Replication, not the triangle filter: the region is scaled down afterwards anyway, and the
     * cropped columns then equal those of a full decode exactly. */
    cinfo->do_fancy_upsampling = FALSE;
    cinfo->dct_method = r->fast_idct ? JDCT_IFAST : JDCT_ISLOW;
    jpeg_start_decompress(cinfo);

    if (r->x < 0 || r->y < 0 || r->width < 1 || r->height < 1 ||
        (unsigned)r->x + (unsigned)r->width > cinfo->output_width ||
        (unsigned)r->y + (unsigned)r->height > cinfo->output_height)
        return refuse(d, "region outside the DCT-scaled image");
    if (r->stride < r->width || (size_t)(r->height - 1) * (size_t)r->stride + (size_t)r->width > r->plane_capacity)
        return refuse(d, "region larger than its planes");

    /* Only the iMCU columns that hold the region are inverse-transformed (and upsampled); libjpeg
     * moves the left edge down to an iMCU boundary, so the region starts `dx` pixels into a row. */
    JDIMENSION left = (JDIMENSION)r->x, width = (JDIMENSION)r->width;
    jpeg_crop_scanline(cinfo, &left, &width);
    size_t dx = (size_t)r->x - left;
    size_t components = (size_t)cinfo->output_components;
    size_t row_bytes = (size_t)cinfo->output_width * components;
    size_t chunk = row_bytes > 0 ? r->rows_capacity / row_bytes : 0;
    if (chunk > MAX_CHUNK_ROWS) chunk = MAX_CHUNK_ROWS;
    if (chunk < 1) return refuse(d, "row scratch too small for one decoded row");
    JSAMPROW rows[MAX_CHUNK_ROWS];
    for (size_t i = 0; i < chunk; i++) rows[i] = r->rows + i * row_bytes;

    /* Rows above the region: entropy-decoded (Huffman data cannot be skipped), not transformed. */
    if (r->y > 0 && jpeg_skip_scanlines(cinfo, (JDIMENSION)r->y) != (JDIMENSION)r->y)
        return refuse(d, "could not skip to the region's first row");
    int done = 0;
    while (done < r->height) {
        JDIMENSION want = (JDIMENSION)(r->height - done) < chunk ? (JDIMENSION)(r->height - done) : (JDIMENSION)chunk;
        int got = (int)jpeg_read_scanlines(cinfo, rows, want);
        if (got <= 0) return refuse(d, "JPEG data ended before the region's last row");
        size_t at = (size_t)done * (size_t)r->stride;
        if (gray) {
            CopyPlane(rows[0] + dx, (int)row_bytes, r->y_plane + at, r->stride, r->width, got);
        } else {
            SplitRGBPlane(rows[0] + dx * 3, (int)row_bytes, r->y_plane + at, r->stride, r->cb_plane + at, r->stride,
                          r->cr_plane + at, r->stride, r->width, got);
        }
        done += got;
    }
    /* Rows below the region are not needed: stop there (reading on would entropy-decode them). */
    if (cinfo->output_scanline >= cinfo->output_height)
        jpeg_finish_decompress(cinfo);
    else
        jpeg_abort_decompress(cinfo);
    return 0;
}
