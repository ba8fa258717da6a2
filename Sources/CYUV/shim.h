#ifndef CAMCLASS_CYUV_SHIM_H
#define CAMCLASS_CYUV_SHIM_H
/* libyuv's C entry points (its headers are C-compatible; the C++ namespace is compiled out). */
#include <libyuv.h>
#endif
