/* The JSON control protocol: request parsing and error replies; what a confidential VM
 * refuses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api_priv.h"
#include "harness.h"
#include "sev_priv.h"
#include "unit.h"
#include "unit_vm.h"
#include "vmm.h"

static void test_request_ok(void)
{
	json_t *req = NULL;
	const char *cmd = NULL;
	char err[256];

	CU_ASSERT_EQUAL_FATAL(api_parse_request("{\"cmd\":\"dirty-log\",\"op\":\"start\"}", &req,
						&cmd, err, sizeof(err)),
			      0);
	CU_ASSERT_STRING_EQUAL(cmd, "dirty-log");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(req, "op")), "start");
	json_decref(req);
}

static void test_request_malformed(void)
{
	static const char *const bad[] = { "",
					   "{",
					   "[1,2]",
					   "\"status\"",
					   "{\"cmd\":5}",
					   "{\"op\":\"x\"}",
					   "{\"cmd\":\"a\",\"cmd\":\"b\"}",
					   "status" };

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *req = NULL;
		const char *cmd = NULL;
		char err[256] = "";

		CU_ASSERT_EQUAL(api_parse_request(bad[i], &req, &cmd, err, sizeof(err)), -EINVAL);
		CU_ASSERT_PTR_NULL(req);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "malformed request"));
	}
}

static void test_error_reply(void)
{
	json_t *r = api_error("unknown command \"%s\"", "frob");

	CU_ASSERT_TRUE(json_is_false(json_object_get(r, "ok")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "error")),
			       "unknown command \"frob\"");
	json_decref(r);
}

static json_t *dispatch(struct api *api, const char *line, bool *ok, const char **error)
{
	json_t *r = api_dispatch(api, line);

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	*ok = json_is_true(json_object_get(r, "ok"));
	*error = json_string_value(json_object_get(r, "error"));
	return r;
}

/* A confidential VM's memory never leaves as anything but ciphertext: every request that
 * would copy it out is refused by name before its handler runs; status shows the launch.
 * (A VM without KVM whose SEV launch is filled in by hand: no SEV host is here.) */
static void test_confidential_refusals(void)
{
	static const char *const reqs[] = {
		"{\"cmd\":\"snapshot\",\"path\":\"/nonexistent/x.snap\"}",
		"{\"cmd\":\"migrate\",\"to\":\"127.0.0.1:1\",\"tls_dir\":\"/nonexistent\"}",
		"{\"cmd\":\"backup\",\"store\":\"/nonexistent\"}",
		"{\"cmd\":\"dirty-log\",\"op\":\"start\"}",
	};
	struct vm *vm = unit_vm_new();
	struct sev_launch *sev = calloc(1, sizeof(*sev));
	struct api *api = NULL;
	const char *error;
	json_t *r, *c;
	bool ok;

	CU_ASSERT_PTR_NOT_NULL_FATAL(vm);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sev);
	CU_ASSERT_EQUAL_FATAL(api_open(NULL, -1, vm, &api), 0);
	api->privileged = true;
	r = dispatch(api, "{\"cmd\":\"status\"}", &ok, &error);
	CU_ASSERT(ok && json_is_null(json_object_get(r, "confidential")));
	json_decref(r);

	*sev = (struct sev_launch){ .sev_fd = -1,
				    .policy = SEV_POLICY_CME,
				    .c_bit = 51,
				    .stage = SEV_FINISHED,
				    .encrypted = 1 << 20,
				    .measure_len = 48 };
	memset(sev->measure, 0x5a, 48);
	vm->sev = sev;
	for (size_t i = 0; i < ARRAY_SIZE(reqs); i++) {
		r = dispatch(api, reqs[i], &ok, &error);
		CU_ASSERT_FALSE(ok);
		CU_ASSERT(error && strstr(error, "is encrypted by this host's processor"));
		json_decref(r);
	}
	r = dispatch(api, "{\"cmd\":\"status\"}", &ok, &error);
	c = json_object_get(r, "confidential");
	CU_ASSERT(ok && json_is_object(c));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "technology")), "sev");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(c, "policy")), 0x0b);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(c, "c_bit")), 51);
	CU_ASSERT(json_is_true(json_object_get(c, "launched")));
	CU_ASSERT(json_is_false(json_object_get(c, "attestable")));
	CU_ASSERT_EQUAL(strlen(json_string_value(json_object_get(c, "launch_measurement")) ?: ""),
			96);
	CU_ASSERT_EQUAL(strncmp(json_string_value(json_object_get(c, "launch_measurement")) ?: "",
				"5a5a", 4),
			0);
	json_decref(r);
	/* Requests that read no memory still work. */
	r = dispatch(api, "{\"cmd\":\"pause\"}", &ok, &error);
	CU_ASSERT_TRUE(ok);
	json_decref(r);
	api_close(api);
	vm->sev = NULL;
	free(sev);
	unit_vm_free(vm);
}

void suite_api(void)
{
	static const struct test_case cases[] = {
		{ "request with arguments", test_request_ok },
		{ "malformed requests are refused", test_request_malformed },
		{ "error replies", test_error_reply },
		{ "a confidential VM refuses every request that copies its memory out",
		  test_confidential_refusals },
		{ NULL, NULL },
	};
	test_add_suite("api", cases);
}
