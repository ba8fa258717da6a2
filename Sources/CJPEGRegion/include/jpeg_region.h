#ifndef CAMCLASS_JPEG_REGION_H
#define CAMCLASS_JPEG_REGION_H
/*
 * Decoding one region of a (M)JPEG frame with libjpeg's own API (jpeglib.h), which TurboJPEG does
 * not expose: DCT scaling, jpeg_crop_scanline for the kept columns, jpeg_skip_scanlines for the
 * rows above them, and stopping after the last kept row. libjpeg reports errors by calling an
 * error_exit that must not return; here it longjmps back into these functions, so the jump never
 * crosses a Swift frame: callers get a status and a message.
 *
 * Thread context: a decoder is used by one thread at a time.
 */
#include <stddef.h>
#include <stdint.h>

typedef struct camclass_jpeg_region_decoder camclass_jpeg_region_decoder;

/* What the header says. */
typedef struct {
    int width;
    int height;
    int components;    /* 1 (grayscale) or 3 (YCbCr); others are refused by the decoder */
    int color_space;   /* J_COLOR_SPACE of the stored data */
    int progressive;   /* 1 for a progressive (multi-scan) JPEG */
} camclass_jpeg_header;

/* The region to decode and where to put it: `x`, `y`, `width`, `height` in the DCT-scaled image
 * (1/`denominator` of the JPEG, rounded up). Output is planar at the region's size: Y, Cb and Cr
 * each at full resolution (chroma upsampled by replication); grayscale writes `y` only. Each plane
 * holds at least `plane_capacity` bytes. `rows` is scratch for a few decoded interleaved rows of
 * the scaled image (`rows_capacity` bytes: 3 x scaled width x 16 is always enough). */
typedef struct {
    int denominator;   /* 1, 2, 4 or 8 */
    int x, y, width, height;
    int fast_idct;     /* libjpeg's JDCT_IFAST instead of JDCT_ISLOW */
    uint8_t *y_plane, *cb_plane, *cr_plane;
    int stride;
    size_t plane_capacity;
    uint8_t *rows;
    size_t rows_capacity;
} camclass_jpeg_region;

/* NULL when out of memory. */
camclass_jpeg_region_decoder *camclass_jpeg_region_create(void);
void camclass_jpeg_region_destroy(camclass_jpeg_region_decoder *decoder);

/* 0, or -1 with camclass_jpeg_region_message set. Allocates nothing (libjpeg reads the header
 * into memory the decoder already has). */
int camclass_jpeg_region_header(camclass_jpeg_region_decoder *decoder, const uint8_t *data, size_t size,
                                camclass_jpeg_header *header);

/* 0, or -1 with camclass_jpeg_region_message set: damaged or truncated data (libjpeg's warnings
 * count as damage), more than 500 progressive scans, a colour space other than YCbCr or
 * grayscale, a region outside the scaled image, or planes too small. Rows below the region are
 * not decoded, so damage there goes unnoticed; everything the region needs is checked.
 * libjpeg allocates the image's working memory from its own pools (freed before returning). */
int camclass_jpeg_region_decode(camclass_jpeg_region_decoder *decoder, const uint8_t *data, size_t size,
                                const camclass_jpeg_region *region);

/* The last failure's message; valid until the next call. */
const char *camclass_jpeg_region_message(const camclass_jpeg_region_decoder *decoder);

#endif
