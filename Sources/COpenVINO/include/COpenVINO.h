#ifndef CAMCLASS_COPENVINO_H
#define CAMCLASS_COPENVINO_H
/*
 * The subset of OpenVINO's C API (libopenvino_c.so, 2023.0 and later) that the CPU backend uses,
 * declared here in our own terms and resolved at run time with dlopen/dlsym, so that the project
 * builds on machines without OpenVINO. Handles are opaque; enum values follow OpenVINO's
 * ov_element_type_e / ov_color_format_e numbering.
 */
#include <stddef.h>
#include <stdint.h>

typedef struct cov_core cov_core;
typedef struct cov_model cov_model;
typedef struct cov_compiled_model cov_compiled_model;
typedef struct cov_infer_request cov_infer_request;
typedef struct cov_tensor cov_tensor;
typedef struct cov_ppp cov_ppp;
typedef struct cov_ppp_input_info cov_ppp_input_info;
typedef struct cov_ppp_input_tensor_info cov_ppp_input_tensor_info;
typedef struct cov_ppp_steps cov_ppp_steps;
typedef struct cov_ppp_model_info cov_ppp_model_info;
typedef struct cov_layout cov_layout;
typedef struct cov_port cov_port; /* ov_output_const_port_t */

typedef struct { int64_t rank; int64_t *dims; } cov_shape;
typedef struct { const char *build_number; const char *description; } cov_version;

enum {
    COV_ELEMENT_F32 = 4,
    COV_ELEMENT_U8 = 16,
};
enum {
    COV_COLOR_NV12_TWO_PLANES = 2,
    COV_COLOR_RGB = 5,
    COV_COLOR_BGR = 6,
};
enum { COV_RESIZE_LINEAR = 0 };

typedef int32_t cov_status;

typedef struct cov_api {
    void *library;
    cov_status (*get_openvino_version)(cov_version *);
    void (*version_free)(cov_version *);
    const char *(*get_error_info)(cov_status);
    const char *(*get_last_err_msg)(void);
    void (*free_string)(const char *);

    cov_status (*core_create)(cov_core **);
    void (*core_free)(cov_core *);
    cov_status (*core_read_model)(const cov_core *, const char *model_path, const char *bin_path, cov_model **);
    /* variadic in OpenVINO: call through cov_compile_model() below */
    cov_status (*core_compile_model)(const cov_core *, const cov_model *, const char *device, size_t n, cov_compiled_model **, ...);
    cov_status (*core_get_property)(const cov_core *, const char *device, const char *key, char **value);
    void (*model_free)(cov_model *);
    /* Model inspection before pre-processing: how many inputs/outputs, and a static input's shape. */
    cov_status (*model_inputs_size)(const cov_model *, size_t *);
    cov_status (*model_outputs_size)(const cov_model *, size_t *);
    _Bool (*model_is_dynamic)(const cov_model *);
    cov_status (*model_const_input_by_index)(const cov_model *, size_t, cov_port **);
    cov_status (*const_port_get_shape)(const cov_port *, cov_shape *);
    void (*output_const_port_free)(cov_port *);

    cov_status (*compiled_model_get_property)(const cov_compiled_model *, const char *key, char **value);
    cov_status (*compiled_model_create_infer_request)(const cov_compiled_model *, cov_infer_request **);
    void (*compiled_model_free)(cov_compiled_model *);

    cov_status (*infer_request_set_input_tensor_by_index)(cov_infer_request *, size_t, const cov_tensor *);
    cov_status (*infer_request_set_output_tensor_by_index)(cov_infer_request *, size_t, const cov_tensor *);
    cov_status (*infer_request_get_output_tensor_by_index)(const cov_infer_request *, size_t, cov_tensor **);
    cov_status (*infer_request_infer)(cov_infer_request *);
    void (*infer_request_free)(cov_infer_request *);

    cov_status (*shape_create)(int64_t rank, const int64_t *dims, cov_shape *);
    cov_status (*shape_free)(cov_shape *);
    cov_status (*tensor_create_from_host_ptr)(int32_t element_type, cov_shape shape, void *host_ptr, cov_tensor **);
    cov_status (*tensor_get_shape)(const cov_tensor *, cov_shape *);
    cov_status (*tensor_get_size)(const cov_tensor *, size_t *);
    cov_status (*tensor_get_element_type)(const cov_tensor *, int32_t *);
    cov_status (*tensor_data)(const cov_tensor *, void **);
    void (*tensor_free)(cov_tensor *);

    cov_status (*layout_create)(const char *, cov_layout **);
    void (*layout_free)(cov_layout *);

    cov_status (*ppp_create)(const cov_model *, cov_ppp **);
    void (*ppp_free)(cov_ppp *);
    cov_status (*ppp_get_input_info_by_index)(const cov_ppp *, size_t, cov_ppp_input_info **);
    void (*ppp_input_info_free)(cov_ppp_input_info *);
    cov_status (*ppp_input_info_get_tensor_info)(const cov_ppp_input_info *, cov_ppp_input_tensor_info **);
    void (*ppp_input_tensor_info_free)(cov_ppp_input_tensor_info *);
    cov_status (*ppp_input_tensor_info_set_element_type)(cov_ppp_input_tensor_info *, int32_t);
    /* variadic in OpenVINO: call through cov_set_nv12_two_planes() below */
    cov_status (*ppp_input_tensor_info_set_color_format_with_subname)(cov_ppp_input_tensor_info *, int32_t, size_t, ...);
    cov_status (*ppp_input_tensor_info_set_spatial_static_shape)(cov_ppp_input_tensor_info *, size_t h, size_t w);
    cov_status (*ppp_input_tensor_info_set_layout)(cov_ppp_input_tensor_info *, cov_layout *);
    cov_status (*ppp_input_info_get_preprocess_steps)(const cov_ppp_input_info *, cov_ppp_steps **);
    void (*ppp_steps_free)(cov_ppp_steps *);
    cov_status (*ppp_steps_convert_element_type)(cov_ppp_steps *, int32_t);
    cov_status (*ppp_steps_convert_color)(cov_ppp_steps *, int32_t);
    cov_status (*ppp_steps_mean_multi_channels)(cov_ppp_steps *, const float *, int32_t);
    cov_status (*ppp_steps_scale_multi_channels)(cov_ppp_steps *, const float *, int32_t);
    cov_status (*ppp_steps_resize)(cov_ppp_steps *, int32_t);
    cov_status (*ppp_input_info_get_model_info)(const cov_ppp_input_info *, cov_ppp_model_info **);
    void (*ppp_model_info_free)(cov_ppp_model_info *);
    cov_status (*ppp_model_info_set_layout)(cov_ppp_model_info *, cov_layout *);
    cov_status (*ppp_build)(const cov_ppp *, cov_model **);
} cov_api;

/* Loads `path` (a file) and resolves every function. Returns 0, or -1 with one line in `err`. */
int cov_load(const char *path, cov_api *api, char *err, size_t errlen);
void cov_unload(cov_api *api);

/* Fixed-argument calls of OpenVINO's variadic functions. `keys`/`values` hold `count` properties. */
cov_status cov_compile_model(const cov_api *api, const cov_core *core, const cov_model *model,
                             const char *device, size_t count, const char *const *keys,
                             const char *const *values, cov_compiled_model **out);
cov_status cov_set_nv12_two_planes(const cov_api *api, cov_ppp_input_tensor_info *info,
                                   const char *y_name, const char *uv_name);
#endif
