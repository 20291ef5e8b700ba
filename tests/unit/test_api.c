/* The JSON control protocol: request parsing and error replies. */
#include <errno.h>
#include <string.h>

#include "harness.h"
#include "unit.h"
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

void suite_api(void)
{
	static const struct test_case cases[] = {
		{ "request with arguments", test_request_ok },
		{ "malformed requests are refused", test_request_malformed },
		{ "error replies", test_error_reply },
		{ NULL, NULL },
	};
	test_add_suite("api", cases);
}
