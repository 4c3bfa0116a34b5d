// SO_SNDBUF for Node sockets: a migration stream over a unix socket (a socket pair to an ssh
// command, a host's control socket) writes 4 MiB PAGE_DATA records, and the default send buffer
// (net.core.wmem_default, about 208 KiB) makes sender and receiver hand the stream back and forth
// about 5,000 times a GiB. Node has no API for the option on stream sockets. TCP sockets are left
// alone: Linux sizes their buffers itself, and setting SO_SNDBUF would turn that off.
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static napi_value fail(napi_env env, const char *what) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

// sendBuffer(fd): getsockopt(SO_SNDBUF) - what the kernel keeps (twice what was asked).
static napi_value get_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "sendBuffer(fd)");
    return NULL;
  }
  int got = 0;
  socklen_t len = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len) != 0) return fail(env, "getsockopt(SO_SNDBUF)");
  napi_value r;
  napi_create_int32(env, got, &r);
  return r;
}

// setSendBuffer(fd, bytes): setsockopt(SO_SNDBUF) (capped by net.core.wmem_max), then sendBuffer(fd).
static napi_value set_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int fd, bytes;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &bytes) != napi_ok || bytes <= 0) {
    napi_throw_type_error(env, NULL, "setSendBuffer(fd, bytes)");
    return NULL;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) != 0) return fail(env, "setsockopt(SO_SNDBUF)");
  return get_buffer(env, info);
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "setSendBuffer", NAPI_AUTO_LENGTH, set_buffer, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "setSendBuffer", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "sendBuffer", NAPI_AUTO_LENGTH, get_buffer, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "sendBuffer", fn) != napi_ok) return NULL;
  return exports;
}
