// A consumer's round trip through the client generated from
// api/openapi.yaml: tsc --noEmit must accept it, and must refuse the
// lines marked @ts-expect-error, which proves the types are real, not any.
import createClient from "openapi-fetch";
import type { components, paths } from "./smq";

type PolledMessage = components["schemas"]["PolledMessage"];

const smq = createClient<paths>({
  baseUrl: "http://localhost:8080",
  headers: { "api-key": "secret" },
});

export async function roundTrip(): Promise<number> {
  const created = await smq.POST("/v1/message", {
    params: { query: { durability: "committed" } },
    body: { channel: "billing", payload: { invoice: 42 }, delay: "30s", max_attempts: 5 },
  });
  if (created.error) {
    throw new Error(created.error.detail ?? "create failed");
  }
  const id: string = created.data.message_id;

  await smq.POST("/v1/messages", {
    body: { messages: [{ channel: "billing", payload: "text", scheduled_at: 1767225600 }] },
  });

  const polled = await smq.GET("/v1/channels/{channel}/poll", {
    params: { path: { channel: "billing" }, query: { max: 10, wait: 5, visibility_timeout: 30 } },
  });
  const messages: PolledMessage[] = polled.data?.messages ?? [];
  const receipts = messages.map((m) => m.receipt);
  await smq.POST("/v1/messages/ack", { body: { receipts } });
  await smq.POST("/v1/messages/nack", { body: { message_ids: [id], delay: 60, reason: "retry later" } });

  const stats = await smq.GET("/v1/channels/{channel}/stats", {
    params: { path: { channel: "billing" } },
  });

  // @ts-expect-error: a message needs a channel.
  await smq.POST("/v1/message", { body: { payload: 1 } });
  // @ts-expect-error: a poll needs the channel in its path.
  await smq.GET("/v1/channels/{channel}/poll", { params: { query: { max: 1 } } });
  // @ts-expect-error: no such route.
  await smq.GET("/v1/nowhere");

  return stats.data?.total ?? 0;
}
