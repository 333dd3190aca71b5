#!/bin/sh
# Lambda Web Adapter entry point (the function's Handler): start the chat app under uvicorn on
# $PORT; the adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) forwards each invocation API Gateway
# makes with InvokeWithResponseStream to it and streams the response back
# (AWS_LWA_INVOKE_MODE=response_stream). The capandex package and
# uvicorn come from the shared layer (/opt/python).
export PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT:-.}${PYTHONPATH:+:$PYTHONPATH}"
exec python -m uvicorn --app-dir "${LAMBDA_TASK_ROOT:-.}" --host 127.0.0.1 --port "${PORT:-8080}" \
    --no-access-log --timeout-keep-alive 60 app:streaming_app
