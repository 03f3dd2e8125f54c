-- wrk script: POST a chat completion body.
-- BENCH_BODY (env) is the JSON body; BENCH_AUTH (env, optional) an Authorization header value.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
  or '{"model":"fake","messages":[{"role":"user","content":"Say hello in one short sentence."}]}'
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
