// A device-side client of the kg-v1 protocol, written against the protocol text (not against the
// server's code): an ECDSA P-256 key made with WebCrypto, its SPKI public key in standard base64,
// the keyId derived from that base64 text, and P1363 signatures over the canonical string.
import { createHash, randomBytes, webcrypto } from "node:crypto";

const { subtle } = webcrypto;

export const ALG = "ECDSA_P256_SHA256_P1363";
export const SPKI_PREFIX = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE";
export const EMPTY_BODY_SHA256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
/** The path a device signs and calls for an OpenAI chat completion through the proxy. */
export const OPENAI_CHAT_PATH = "/api/v1/proxy/openai/v1/chat/completions";

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const ECDSA_SHA256 = { name: "ECDSA", hash: "SHA-256" } as const;

/** The seven headers of a signed request, named as the SDK names them. */
export interface SignedHeaders {
  "x-keyguard-api-key": string;
  "x-keyguard-key-id": string;
  "x-keyguard-timestamp": string;
  "x-keyguard-nonce": string;
  "x-keyguard-body-sha256": string;
  "x-keyguard-alg": string;
  "x-keyguard-signature": string;
}

export interface CanonicalFields {
  timestamp: string;
  method: string;
  pathAndQuery: string;
  bodySha256: string;
  nonce: string;
  apiKey: string;
  keyId: string;
}

/** keyId: the first 16 bytes of SHA-256 over the base64 TEXT of the public key, lower-case hex. */
export function keyIdOf(publicKeyBase64: string): string {
  return createHash("sha256").update(publicKeyBase64, "utf8").digest().subarray(0, 16).toString("hex");
}

/** SHA-256 of the exact body bytes, standard base64 with padding. */
export function bodySha256(body: string | Uint8Array): string {
  return createHash("sha256").update(typeof body === "string" ? Buffer.from(body, "utf8") : body).digest("base64");
}

/** `kg-v1|ts|METHOD|pathAndQuery|bodySha256|nonce|apiKey|keyId`, no trailing separator. */
export function canonicalString(f: CanonicalFields): string {
  const fields = [f.timestamp, f.method.toUpperCase(), f.pathAndQuery, f.bodySha256, f.nonce, f.apiKey, f.keyId];
  for (const field of fields) {
    if (field.includes("|")) throw new Error(`a kg-v1 field may not contain '|': ${field}`);
  }
  return ["kg-v1", ...fields].join("|");
}

/** 16 random bytes, standard base64 (24 characters). */
export function newNonce(): string {
  return randomBytes(16).toString("base64");
}

/** Verifies a base64 P1363 signature over `text` with a base64 SPKI public key. */
export async function verifyP1363(publicKeyBase64: string, text: string, signatureBase64: string): Promise<boolean> {
  const key = await subtle.importKey("spki", Buffer.from(publicKeyBase64, "base64"), ECDSA_P256, false, ["verify"]);
  return subtle.verify(ECDSA_SHA256, key, Buffer.from(signatureBase64, "base64"), Buffer.from(text, "utf8"));
}

export interface EnrollOptions {
  label: string;
  fingerprint?: string;
  enrollmentCode?: string;
  userAgent?: string;
  metadata?: Record<string, unknown>;
}

export interface SignOptions {
  apiKey: string;
  method: string;
  pathAndQuery: string;
  body?: string;
  /** Defaults to now; a fixed value only for checks against known vectors. */
  timestamp?: string;
  nonce?: string;
}

/** One device: its key pair and what it tells the server about itself. */
export class Device {
  private constructor(
    private readonly privateKey: webcrypto.CryptoKey,
    readonly publicKey: string,
    readonly keyId: string,
  ) {}

  /** A fresh device key, as the SDK makes it (the private key never leaves this object). */
  static async generate(): Promise<Device> {
    const pair = (await subtle.generateKey(ECDSA_P256, false, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
    const spki = Buffer.from(await subtle.exportKey("spki", pair.publicKey)).toString("base64");
    return new Device(pair.privateKey, spki, keyIdOf(spki));
  }

  /** A device from a known PKCS#8 private key and its SPKI public key (test vectors). */
  static async fromPkcs8(pkcs8Base64: string, publicKeyBase64: string): Promise<Device> {
    const key = await subtle.importKey("pkcs8", Buffer.from(pkcs8Base64, "base64"), ECDSA_P256, false, ["sign"]);
    return new Device(key, publicKeyBase64, keyIdOf(publicKeyBase64));
  }

  /** The raw P1363 signature (r‖s, 64 bytes) over the UTF-8 text, base64. */
  async sign(text: string): Promise<string> {
    const signature = await subtle.sign(ECDSA_SHA256, this.privateKey, Buffer.from(text, "utf8"));
    return Buffer.from(signature).toString("base64");
  }

  /** The seven headers for one request, and the canonical string they sign. */
  async signRequest(o: SignOptions): Promise<{ headers: SignedHeaders; canonical: string }> {
    const fields: CanonicalFields = {
      timestamp: o.timestamp ?? new Date().toISOString(),
      method: o.method.toUpperCase(),
      pathAndQuery: o.pathAndQuery,
      bodySha256: bodySha256(o.body ?? ""),
      nonce: o.nonce ?? newNonce(),
      apiKey: o.apiKey,
      keyId: this.keyId,
    };
    const canonical = canonicalString(fields);
    const headers: SignedHeaders = {
      "x-keyguard-api-key": fields.apiKey,
      "x-keyguard-key-id": fields.keyId,
      "x-keyguard-timestamp": fields.timestamp,
      "x-keyguard-nonce": fields.nonce,
      "x-keyguard-body-sha256": fields.bodySha256,
      "x-keyguard-alg": ALG,
      "x-keyguard-signature": await this.sign(canonical),
    };
    return { headers, canonical };
  }

  /** The SDK's `enroll()` payload, sent to `POST /api/v1/keyguard/enroll`. */
  enrollmentBody(o: EnrollOptions): Record<string, unknown> {
    const body: Record<string, unknown> = {
      publicKey: this.publicKey,
      keyId: this.keyId,
      deviceFingerprint: o.fingerprint ?? `e2e-${this.keyId}`,
      label: o.label,
    };
    if (o.userAgent !== undefined) body.userAgent = o.userAgent;
    if (o.metadata !== undefined) body.metadata = o.metadata;
    if (o.enrollmentCode !== undefined) body.enrollmentCode = o.enrollmentCode;
    return body;
  }

  /** Enrolls this device into the project of `apiKey`. */
  async enroll(baseURL: string, apiKey: string, o: EnrollOptions): Promise<Response> {
    return fetch(new URL("/api/v1/keyguard/enroll", baseURL), {
      method: "POST",
      headers: { "content-type": "application/json", "x-keyguard-api-key": apiKey },
      body: JSON.stringify(this.enrollmentBody(o)),
    });
  }

  /** Sends one signed request: the path signed is the path sent, `/api/v1` included. */
  async call(baseURL: string, o: SignOptions): Promise<Response> {
    const { headers } = await this.signRequest(o);
    const extra: Record<string, string> = o.body ? { "content-type": "application/json" } : {};
    return fetch(new URL(o.pathAndQuery, baseURL), {
      method: o.method,
      headers: { ...headers, ...extra },
      body: o.body && o.method.toUpperCase() !== "GET" ? o.body : undefined,
    });
  }
}
