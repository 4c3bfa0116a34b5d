// malloc_trim(0) for Node: gives back to the OS the pages of freed memory that glibc keeps in its
// heaps. free() only returns the top of a heap, so one live block high up keeps every freed page
// below it in the process's RSS; malloc_trim also releases free pages inside the heap
// (madvise MADV_DONTNEED). Node has no API for it (issue 14: after hostile guests left, the
// standalone xenstored kept 25-50 MB of freed socket and Buffer memory in glibc's heap).
#include <malloc.h>
#include <node_api.h>

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value released;
  napi_get_boolean(env, malloc_trim(0) != 0, &released);
  return released;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value fn;
  if (napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, trim, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mallocTrim", fn) != napi_ok) return NULL;
  return exports;
}
