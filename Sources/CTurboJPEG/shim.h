#ifndef CAMCLASS_CTURBOJPEG_SHIM_H
#define CAMCLASS_CTURBOJPEG_SHIM_H
#include <turbojpeg.h>

/* Flags are macros in turbojpeg.h; Swift sees these named constants instead. */
static const int CTJ_FLAG_FASTDCT = TJFLAG_FASTDCT;
static const int CTJ_FLAG_FASTUPSAMPLE = TJFLAG_FASTUPSAMPLE;
static const int CTJ_FLAG_STOPONWARNING = TJFLAG_STOPONWARNING;
static const int CTJ_FLAG_LIMITSCANS = TJFLAG_LIMITSCANS;
static const int CTJ_FLAG_ACCURATEDCT = TJFLAG_ACCURATEDCT;
#endif
