"""Chat function: the AI assistant (``/api/chat…``), streamed as Server-Sent Events.

Deployed on the API's REST API with response streaming (README.md here): API Gateway invokes the
function with ``InvokeWithResponseStream`` and the AWS Lambda Web Adapter streams what uvicorn
serves (``run.sh`` → :data:`streaming_app`), because Mangum cannot stream. ``POST /api/chat`` is
``async`` so a long answer holds no worker thread; its database work runs in short transactions
off the event loop (capandex.chat.service), never during the stream.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from capandex.api.app import create_app, lambda_handler
from capandex.api.deps import CurrentUser, Db
from capandex.api.openapi import errors
from capandex.chat import repository as repo
from capandex.chat.models import ChatMessagesPublic, ChatRequest
from capandex.chat.service import start_chat
from capandex.chat.sse import EventStreamResponse
from capandex.chat.upstream import preload
from capandex.models import Success
from capandex.runtime import LambdaWebAdapterInvocations

router = APIRouter(prefix="/api/chat", tags=["chat"])

FlowIdQuery = Query(min_length=1, max_length=64, description="The flow whose chat this is")


@router.post("", response_class=EventStreamResponse, status_code=200,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": 'data: {"text":…} per delta, {"flowPatch":…}, {"error":…}, then [DONE]'},
                        **errors(404, 429, 502)})
async def chat(*, user: CurrentUser, body: ChatRequest) -> EventStreamResponse:
    return EventStreamResponse(await start_chat(user_id=user.id, request=body))


@router.get("/messages", response_model=ChatMessagesPublic, responses=errors(404))
def list_messages(*, user: CurrentUser, db: Db, flowId: str = FlowIdQuery) -> dict:
    return {"messages": repo.list_messages(db, user_id=user.id, flow_id=flowId)}


@router.delete("/messages", response_model=Success, responses=errors(404))
def delete_messages(*, user: CurrentUser, db: Db, flowId: str = FlowIdQuery) -> dict:
    repo.delete_messages(db, user_id=user.id, flow_id=flowId)
    return {"success": True}


app = create_app("chat", [router])
#: What uvicorn serves behind the Lambda Web Adapter (run.sh): each request is one invocation, with
#: its correlation id and metrics (capandex.runtime).
streaming_app = LambdaWebAdapterInvocations(app, "chat")
#: Buffered entry point (Mangum), for ``sam local invoke -e events/chat/…`` and the event tests: it
#: returns the whole SSE body at once. The deployed function streams through run.sh instead.
handler = lambda_handler(app)

# The Anthropic SDK is imported while the function starts, not on the first message: SnapStart
# snapshots it, so a new container answers its first message as fast as the next ones.
preload()
