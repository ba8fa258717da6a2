#include "COpenVINO.h"
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#define RESOLVE(field, symbol)                                                                \
    do {                                                                                      \
        *(void **)(&api->field) = dlsym(handle, symbol);                                      \
        if (api->field == NULL) {                                                             \
            snprintf(err, errlen, "%s lacks symbol '%s': OpenVINO 2023.0 or newer is needed " \
                     "(pip install --upgrade openvino)", path, symbol);                       \
            dlclose(handle);                                                                  \
            memset(api, 0, sizeof(*api));                                                     \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)

int cov_load(const char *path, cov_api *api, char *err, size_t errlen) {
    memset(api, 0, sizeof(*api));
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();
        snprintf(err, errlen, "%s", why ? why : "dlopen failed");
        return -1;
    }
    RESOLVE(get_openvino_version, "ov_get_openvino_version");
    RESOLVE(version_free, "ov_version_free");
    RESOLVE(get_error_info, "ov_get_error_info");
    RESOLVE(free_string, "ov_free");
    RESOLVE(core_create, "ov_core_create");
    RESOLVE(core_free, "ov_core_free");
    RESOLVE(core_read_model, "ov_core_read_model");
    RESOLVE(core_compile_model, "ov_core_compile_model");
    RESOLVE(core_get_property, "ov_core_get_property");
    RESOLVE(model_free, "ov_model_free");
    RESOLVE(model_inputs_size, "ov_model_inputs_size");
    RESOLVE(model_outputs_size, "ov_model_outputs_size");
    RESOLVE(model_is_dynamic, "ov_model_is_dynamic");
    RESOLVE(model_const_input_by_index, "ov_model_const_input_by_index");
    RESOLVE(const_port_get_shape, "ov_const_port_get_shape");
    RESOLVE(output_const_port_free, "ov_output_const_port_free");
    RESOLVE(compiled_model_get_property, "ov_compiled_model_get_property");
    RESOLVE(compiled_model_create_infer_request, "ov_compiled_model_create_infer_request");
    RESOLVE(compiled_model_free, "ov_compiled_model_free");
    RESOLVE(infer_request_set_input_tensor_by_index, "ov_infer_request_set_input_tensor_by_index");
    RESOLVE(infer_request_set_output_tensor_by_index, "ov_infer_request_set_output_tensor_by_index");
    RESOLVE(infer_request_get_output_tensor_by_index, "ov_infer_request_get_output_tensor_by_index");
    RESOLVE(infer_request_infer, "ov_infer_request_infer");
    RESOLVE(infer_request_free, "ov_infer_request_free");
    RESOLVE(shape_create, "ov_shape_create");
    RESOLVE(shape_free, "ov_shape_free");
    RESOLVE(tensor_create_from_host_ptr, "ov_tensor_create_from_host_ptr");
    RESOLVE(tensor_get_shape, "ov_tensor_get_shape");
    RESOLVE(tensor_get_size, "ov_tensor_get_size");
    RESOLVE(tensor_get_element_type, "ov_tensor_get_element_type");
    RESOLVE(tensor_data, "ov_tensor_data");
    RESOLVE(tensor_free, "ov_tensor_free");
    RESOLVE(layout_create, "ov_layout_create");
    RESOLVE(layout_free, "ov_layout_free");
    RESOLVE(ppp_create, "ov_preprocess_prepostprocessor_create");
    RESOLVE(ppp_free, "ov_preprocess_prepostprocessor_free");
    RESOLVE(ppp_get_input_info_by_index, "ov_preprocess_prepostprocessor_get_input_info_by_index");
    RESOLVE(ppp_input_info_free, "ov_preprocess_input_info_free");
    RESOLVE(ppp_input_info_get_tensor_info, "ov_preprocess_input_info_get_tensor_info");
    RESOLVE(ppp_input_tensor_info_free, "ov_preprocess_input_tensor_info_free");
    RESOLVE(ppp_input_tensor_info_set_element_type, "ov_preprocess_input_tensor_info_set_element_type");
    RESOLVE(ppp_input_tensor_info_set_color_format_with_subname,
            "ov_preprocess_input_tensor_info_set_color_format_with_subname");
    RESOLVE(ppp_input_tensor_info_set_spatial_static_shape,
            "ov_preprocess_input_tensor_info_set_spatial_static_shape");
    RESOLVE(ppp_input_tensor_info_set_layout, "ov_preprocess_input_tensor_info_set_layout");
    RESOLVE(ppp_input_info_get_preprocess_steps, "ov_preprocess_input_info_get_preprocess_steps");
    RESOLVE(ppp_steps_free, "ov_preprocess_preprocess_steps_free");
    RESOLVE(ppp_steps_convert_element_type, "ov_preprocess_preprocess_steps_convert_element_type");
    RESOLVE(ppp_steps_convert_color, "ov_preprocess_preprocess_steps_convert_color");
    RESOLVE(ppp_steps_mean_multi_channels, "ov_preprocess_preprocess_steps_mean_multi_channels");
    RESOLVE(ppp_steps_scale_multi_channels, "ov_preprocess_preprocess_steps_scale_multi_channels");
    RESOLVE(ppp_steps_resize, "ov_preprocess_preprocess_steps_resize");
    RESOLVE(ppp_input_info_get_model_info, "ov_preprocess_input_info_get_model_info");
    RESOLVE(ppp_model_info_free, "ov_preprocess_input_model_info_free");
    RESOLVE(ppp_model_info_set_layout, "ov_preprocess_input_model_info_set_layout");
    RESOLVE(ppp_build, "ov_preprocess_prepostprocessor_build");
    /* optional: newer releases only */
    *(void **)(&api->get_last_err_msg) = dlsym(handle, "ov_get_last_err_msg");
    api->library = handle;
    return 0;
}

void cov_unload(cov_api *api) {
    if (api->library != NULL) dlclose(api->library);
    memset(api, 0, sizeof(*api));
}

cov_status cov_compile_model(const cov_api *api, const cov_core *core, const cov_model *model,
                             const char *device, size_t count, const char *const *keys,
                             const char *const *values, cov_compiled_model **out) {
    switch (count) {
    case 0: return api->core_compile_model(core, model, device, 0, out);
    case 1: return api->core_compile_model(core, model, device, 2, out, keys[0], values[0]);
    case 2: return api->core_compile_model(core, model, device, 4, out, keys[0], values[0], keys[1], values[1]);
    case 3: return api->core_compile_model(core, model, device, 6, out, keys[0], values[0], keys[1], values[1],
                                           keys[2], values[2]);
    case 4: return api->core_compile_model(core, model, device, 8, out, keys[0], values[0], keys[1], values[1],
                                           keys[2], values[2], keys[3], values[3]);
    default: return -14; /* INVALID_C_PARAM: more properties than this wrapper passes */
    }
}

cov_status cov_set_nv12_two_planes(const cov_api *api, cov_ppp_input_tensor_info *info,
                                   const char *y_name, const char *uv_name) {
    return api->ppp_input_tensor_info_set_color_format_with_subname(info, COV_COLOR_NV12_TWO_PLANES, 2,
                                                                    y_name, uv_name);
}
