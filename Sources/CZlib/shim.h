// zlib through a thin shim: deflateInit2/inflateInit2 are macros Swift cannot call directly.
#ifndef CAMCLASS_CZLIB_SHIM_H
#define CAMCLASS_CZLIB_SHIM_H
#include <zlib.h>

/// A deflate stream writing the gzip format (RFC 1952), as `gzip` does.
static inline int czlib_deflate_init_gzip(z_stream *s, int level) {
    return deflateInit2(s, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

/// An inflate stream reading gzip (or zlib) data.
static inline int czlib_inflate_init_auto(z_stream *s) {
    return inflateInit2(s, 15 + 32);
}
#endif
