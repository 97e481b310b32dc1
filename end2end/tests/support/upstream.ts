// A stand-in for the OpenAI API on a random loopback port: it records every request it gets and
// answers a chat completion with a usage block, like the real one.
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface FakeUpstream {
  /** `http://127.0.0.1:<port>`, to be given as a key's base URL. */
  url: string;
  received: ReceivedRequest[];
  close(): Promise<void>;
}

export const FAKE_USAGE = { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 };

export async function startFakeOpenAI(): Promise<FakeUpstream> {
  const received: ReceivedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "chatcmpl-e2e",
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: "gpt-4o-mini",
          choices: [
            { index: 0, message: { role: "assistant", content: "Hello from the fake upstream." }, finish_reason: "stop" },
          ],
          usage: FAKE_USAGE,
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
