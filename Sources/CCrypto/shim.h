#ifndef CAMCLASS_CCRYPTO_SHIM_H
#define CAMCLASS_CCRYPTO_SHIM_H
// OpenSSL's libcrypto for message digests (the model file's SHA-256): the EVP interface only.
#include <openssl/evp.h>
#endif
