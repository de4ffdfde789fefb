// Signs webhook requests with the providers' own npm libraries, so that tests/api/provider_libs.rs
// can check hookrelay's sources against them rather than against its own reading of the docs:
// `standardwebhooks` (Webhook.sign), `stripe` (webhooks.generateTestHeaderString) and
// `@octokit/webhooks-methods` (sign).
//
//   node sign-providers.js '[{"preset": "stripe", "secret": "whsec_…", "body": "{…}"}, …]'
//
// Each request is {preset, secret, body, id?, timestamp?} (timestamp in Unix seconds: the
// library's own "now" when absent). Prints one JSON line per request, in order:
// {"preset", "headers", "body"}, the headers being the ones the provider sends that the
// signature depends on.
'use strict';

const crypto = require('node:crypto');
const { Webhook } = require('standardwebhooks');
const Stripe = require('stripe');

async function headersFor(req) {
  switch (req.preset) {
    case 'standard_webhooks': {
      const id = req.id ?? `msg_${crypto.randomUUID()}`;
      const at = req.timestamp === undefined ? new Date() : new Date(req.timestamp * 1000);
      return {
        'webhook-id': id,
        'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
        'webhook-signature': new Webhook(req.secret).sign(id, at, req.body),
      };
    }
    case 'stripe': {
      const opts = { payload: req.body, secret: req.secret };
      if (req.timestamp !== undefined) {
        opts.timestamp = req.timestamp;
      }
      return { 'stripe-signature': Stripe.webhooks.generateTestHeaderString(opts) };
    }
    case 'github': {
      // ESM only.
      const { sign } = await import('@octokit/webhooks-methods');
      return { 'x-hub-signature-256': await sign(req.secret, req.body) };
    }
    default:
      throw new Error(`no npm library signs preset ${JSON.stringify(req.preset)}`);
  }
}

async function main() {
  const requests = JSON.parse(process.argv[2] ?? '[]');
  const lines = [];
  for (const req of requests) {
    lines.push(JSON.stringify({ preset: req.preset, headers: await headersFor(req), body: req.body }));
  }
  process.stdout.write(lines.map((l) => `${l}\n`).join(''));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
