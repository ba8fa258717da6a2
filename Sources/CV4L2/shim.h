#ifndef CAMCLASS_CV4L2_SHIM_H
#define CAMCLASS_CV4L2_SHIM_H
/*
 * Thin shim over libv4l2 and the kernel's videodev2.h for Swift:
 * - v4l2_open / v4l2_ioctl / open / ioctl are variadic: fixed-argument static inline wrappers;
 * - VIDIOC_* request codes and V4L2_PIX_FMT_* are macros: named constants.
 * `raw` selects plain open/ioctl/mmap (some drivers behave better without libv4l2's emulation).
 */
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/videodev2.h>
#include <libv4l2.h>

static inline int cv4l2_open(const char *path, int flags, int raw) {
    return raw ? open(path, flags) : v4l2_open(path, flags);
}
static inline int cv4l2_close(int fd, int raw) { return raw ? close(fd) : v4l2_close(fd); }
static inline int cv4l2_ioctl(int fd, unsigned long request, void *arg, int raw) {
    return raw ? ioctl(fd, request, arg) : v4l2_ioctl(fd, request, arg);
}
static inline void *cv4l2_mmap(void *start, size_t length, int prot, int flags, int fd, int64_t offset, int raw) {
    return raw ? mmap(start, length, prot, flags, fd, (off_t)offset)
               : v4l2_mmap(start, length, prot, flags, fd, offset);
}
static inline int cv4l2_munmap(void *start, size_t length, int raw) {
    return raw ? munmap(start, length) : v4l2_munmap(start, length);
}

/* A wake-up handle for poll() next to the camera fd: requestStop() writes it from another thread. */
static inline int cv4l2_wakefd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

static const unsigned long CV4L2_VIDIOC_QUERYCAP = VIDIOC_QUERYCAP;
static const unsigned long CV4L2_VIDIOC_ENUM_FMT = VIDIOC_ENUM_FMT;
static const unsigned long CV4L2_VIDIOC_ENUM_FRAMESIZES = VIDIOC_ENUM_FRAMESIZES;
static const unsigned long CV4L2_VIDIOC_ENUM_FRAMEINTERVALS = VIDIOC_ENUM_FRAMEINTERVALS;
static const unsigned long CV4L2_VIDIOC_G_FMT = VIDIOC_G_FMT;
static const unsigned long CV4L2_VIDIOC_S_FMT = VIDIOC_S_FMT;
static const unsigned long CV4L2_VIDIOC_TRY_FMT = VIDIOC_TRY_FMT;
static const unsigned long CV4L2_VIDIOC_G_PARM = VIDIOC_G_PARM;
static const unsigned long CV4L2_VIDIOC_S_PARM = VIDIOC_S_PARM;
static const unsigned long CV4L2_VIDIOC_REQBUFS = VIDIOC_REQBUFS;
static const unsigned long CV4L2_VIDIOC_QUERYBUF = VIDIOC_QUERYBUF;
static const unsigned long CV4L2_VIDIOC_QBUF = VIDIOC_QBUF;
static const unsigned long CV4L2_VIDIOC_DQBUF = VIDIOC_DQBUF;
static const unsigned long CV4L2_VIDIOC_STREAMON = VIDIOC_STREAMON;
static const unsigned long CV4L2_VIDIOC_STREAMOFF = VIDIOC_STREAMOFF;
static const unsigned long CV4L2_VIDIOC_G_INPUT = VIDIOC_G_INPUT;
static const unsigned long CV4L2_VIDIOC_S_INPUT = VIDIOC_S_INPUT;

static const uint32_t CV4L2_PIX_FMT_NV12 = V4L2_PIX_FMT_NV12;
static const uint32_t CV4L2_PIX_FMT_YUYV = V4L2_PIX_FMT_YUYV;
static const uint32_t CV4L2_PIX_FMT_MJPEG = V4L2_PIX_FMT_MJPEG;
static const uint32_t CV4L2_PIX_FMT_JPEG = V4L2_PIX_FMT_JPEG;

static const uint32_t CV4L2_CAP_VIDEO_CAPTURE = V4L2_CAP_VIDEO_CAPTURE;
static const uint32_t CV4L2_CAP_VIDEO_CAPTURE_MPLANE = V4L2_CAP_VIDEO_CAPTURE_MPLANE;
static const uint32_t CV4L2_CAP_META_CAPTURE = V4L2_CAP_META_CAPTURE;
static const uint32_t CV4L2_CAP_STREAMING = V4L2_CAP_STREAMING;
static const uint32_t CV4L2_CAP_DEVICE_CAPS = V4L2_CAP_DEVICE_CAPS;
static const uint32_t CV4L2_BUF_TYPE_VIDEO_CAPTURE = V4L2_BUF_TYPE_VIDEO_CAPTURE;
static const uint32_t CV4L2_MEMORY_MMAP = V4L2_MEMORY_MMAP;
static const uint32_t CV4L2_BUF_FLAG_ERROR = V4L2_BUF_FLAG_ERROR;
static const uint32_t CV4L2_BUF_FLAG_TIMESTAMP_MASK = V4L2_BUF_FLAG_TIMESTAMP_MASK;
static const uint32_t CV4L2_BUF_FLAG_TIMESTAMP_MONOTONIC = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
static const uint32_t CV4L2_FMT_FLAG_COMPRESSED = V4L2_FMT_FLAG_COMPRESSED;
static const uint32_t CV4L2_FMT_FLAG_EMULATED = V4L2_FMT_FLAG_EMULATED;
static const uint32_t CV4L2_FIELD_ANY = V4L2_FIELD_ANY;
static const uint32_t CV4L2_FIELD_NONE = V4L2_FIELD_NONE;
static const uint32_t CV4L2_FRMSIZE_TYPE_DISCRETE = V4L2_FRMSIZE_TYPE_DISCRETE;
static const uint32_t CV4L2_FRMSIZE_TYPE_CONTINUOUS = V4L2_FRMSIZE_TYPE_CONTINUOUS;
static const uint32_t CV4L2_FRMSIZE_TYPE_STEPWISE = V4L2_FRMSIZE_TYPE_STEPWISE;
static const uint32_t CV4L2_FRMIVAL_TYPE_DISCRETE = V4L2_FRMIVAL_TYPE_DISCRETE;
static const uint32_t CV4L2_FRMIVAL_TYPE_CONTINUOUS = V4L2_FRMIVAL_TYPE_CONTINUOUS;
static const uint32_t CV4L2_FRMIVAL_TYPE_STEPWISE = V4L2_FRMIVAL_TYPE_STEPWISE;
static const uint32_t CV4L2_CAP_TIMEPERFRAME = V4L2_CAP_TIMEPERFRAME;

/* v4l2_format.fmt is a union: accessors keep Swift away from its layout. */
static inline struct v4l2_pix_format *cv4l2_format_pix(struct v4l2_format *f) { return &f->fmt.pix; }
static inline struct v4l2_captureparm *cv4l2_parm_capture(struct v4l2_streamparm *p) { return &p->parm.capture; }
static inline uint32_t cv4l2_buffer_offset(const struct v4l2_buffer *b) { return b->m.offset; }
/* Frame size and interval enumerations carry anonymous unions: the same kind of accessors. */
static inline struct v4l2_frmsize_discrete *cv4l2_frmsize_discrete(struct v4l2_frmsizeenum *e) { return &e->discrete; }
static inline struct v4l2_frmsize_stepwise *cv4l2_frmsize_stepwise(struct v4l2_frmsizeenum *e) { return &e->stepwise; }
static inline struct v4l2_fract *cv4l2_frmival_discrete(struct v4l2_frmivalenum *e) { return &e->discrete; }
static inline struct v4l2_frmival_stepwise *cv4l2_frmival_stepwise(struct v4l2_frmivalenum *e) { return &e->stepwise; }
#endif
