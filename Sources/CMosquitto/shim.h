// libmosquitto (Debian libmosquitto-dev) through a thin shim: named constants for the macros
// Swift imports awkwardly, and one call per option so Swift never passes `void *` option values.
#ifndef CAMCLASS_CMOSQUITTO_SHIM_H
#define CAMCLASS_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
#include <mqtt_protocol.h>

static const int cmosq_protocol_v311 = MQTT_PROTOCOL_V311;
static const int cmosq_protocol_v5 = MQTT_PROTOCOL_V5;

/// Chooses MQTT 3.1.1 or 5 (before connecting).
static inline int cmosq_set_protocol(struct mosquitto *mosq, int version) {
    return mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, version);
}

/// TCP_NODELAY: records are small and latency matters more than packet count.
static inline int cmosq_set_nodelay(struct mosquitto *mosq, int on) {
    return mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, on);
}

/// A human-readable reason for a refused CONNACK: v5 reason codes and v3 return codes differ.
static inline const char *cmosq_connack_reason(int protocol, int code) {
    return protocol == MQTT_PROTOCOL_V5 ? mosquitto_reason_string(code) : mosquitto_connack_string(code);
}
#endif
