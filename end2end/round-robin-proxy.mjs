// A tiny round-robin TCP proxy, as a load balancer in front of several instances: each new
// connection goes to the next instance that accepts it. Used by the two-instance end-to-end run
// (`E2E_INSTANCES=2`, see playwright.config.ts).
//
//   node round-robin-proxy.mjs <listen port> <upstream port> [<upstream port> …]
import net from 'node:net';

const [listenPort, ...upstreams] = process.argv.slice(2).map(Number);
if (!listenPort || upstreams.length === 0) {
  console.error('usage: node round-robin-proxy.mjs <listen port> <upstream port>…');
  process.exit(2);
}

let next = 0;

/** Connects `client` to the `tries`-th instance after `first`, skipping instances that refuse. */
function connect(client, first, tries) {
  if (tries === upstreams.length) {
    client.destroy();
    return;
  }
  const port = upstreams[(first + tries) % upstreams.length];
  const upstream = net.connect({ host: '127.0.0.1', port });
  let connected = false;
  upstream.once('connect', () => {
    connected = true;
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  });
  upstream.on('error', () => {
    if (!connected) {
      connect(client, first, tries + 1);
    } else {
      // The instance hung up (e.g. answered 413 before reading the body): let what it sent
      // reach the browser, as a real load balancer does, rather than resetting.
      client.end();
    }
  });
  client.on('error', () => upstream.destroy());
  client.once('close', () => upstream.destroy());
}

net
  .createServer({ pauseOnConnect: true }, (client) => {
    const first = next;
    next = (next + 1) % upstreams.length;
    connect(client, first, 0);
  })
  .listen(listenPort, '127.0.0.1', () => {
    console.log(`round-robin proxy on 127.0.0.1:${listenPort} → ${upstreams.join(', ')}`);
  });
