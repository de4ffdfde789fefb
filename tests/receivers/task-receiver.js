// The README's task receiver: verifies hookrelay's task calls with the standardwebhooks library.
// TASKS_SECRET is tasks.signing_secret (or the content of <database dir>/tasks.secret).
const http = require("http");
const { Webhook } = require("standardwebhooks");
const wh = new Webhook(process.env.TASKS_SECRET);
http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    try {
      const task = wh.verify(body, req.headers); // throws unless the signature is hookrelay's
      console.log(req.url, req.headers["x-hookrelay-attempt"], JSON.stringify(task));
      res.writeHead(200).end("done"); // any 2xx: the task succeeded; anything else: retried
    } catch (e) {
      res.writeHead(401).end("invalid signature");
    }
  });
}).listen(Number(process.env.PORT || 3000), "127.0.0.1");
