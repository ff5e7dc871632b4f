// <global-presence room="product-123"></global-presence>: who else is on
// this page now, live, from the Global Presence server this script came
// from. The badge is the server's own HTML (the badge format of the room's
// stream), shown in a shadow root; style it through the --gp-* custom
// properties. No dependencies.
(() => {
  "use strict";
  if (customElements.get("global-presence")) return;
  const script = document.currentScript;
  const server = new URL(script ? script.src : "/", location.href).origin;
  const css = __BADGE_CSS__;
  const maxWait = 30000;

  // roomFromPath names a room after the host page's path: the characters a
  // room allows are kept, others become "_", empty segments go.
  const roomFromPath = (path) => {
    const clean = (p) => p.split("/").filter((s) => s && s !== "." && s !== "..");
    const segs = clean(path).map((s) => {
      try { s = decodeURIComponent(s); } catch (e) { /* keep it encoded */ }
      return s.replace(/[^A-Za-z0-9._~-]/g, "_");
    });
    return clean(segs.join("/").slice(0, 128)).join("/") || "index";
  };

  const el = (tag, cls, parent) => {
    const e = document.createElement(tag);
    e.className = cls;
    parent.append(e);
    return e;
  };

  class GlobalPresence extends HTMLElement {
    static get observedAttributes() { return ["room"]; }

    connectedCallback() {
      if (!this.shadowRoot) this.build();
      this.connect();
    }

    disconnectedCallback() { this.close(); }

    attributeChangedCallback() {
      if (this.shadowRoot && this.isConnected) { this.close(); this.connect(); }
    }

    build() {
      const root = this.attachShadow({ mode: "open" });
      // Constructed sheets pass a host page's CSP that forbids inline styles.
      if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(css);
        this.mine = new CSSStyleSheet();
        root.adoptedStyleSheets = [sheet, this.mine];
      } else {
        el("style", "", root).textContent = css;
        this.mine = { replaceSync: (text) => { this.mineEl.textContent = text; } };
        this.mineEl = el("style", "", root);
      }
      this.badge = el("div", "gp-badge", root);
      this.badge.setAttribute("part", "badge");
      this.parts = {
        status: el("p", "gp-status", this.badge),
        regions: el("div", "gp-presence", this.badge),
        tabs: el("p", "gp-you", this.badge),
      };
      this.parts.status.setAttribute("role", "status");
      this.parts.regions.setAttribute("aria-live", "polite");
      this.fails = 0;
      this.stale("Connecting…");
    }

    connect() {
      const room = this.getAttribute("room") || roomFromPath(location.pathname);
      const path = room.split("/").map(encodeURIComponent).join("/");
      const es = new EventSource(`${server}/rooms/${path}/events?format=badge`, { withCredentials: true });
      this.es = es;
      es.onopen = () => {
        this.fails = 0;
        this.badge.classList.remove("gp-reconnecting");
      };
      for (const name of Object.keys(this.parts)) {
        es.addEventListener(name, (e) => this.swap(name, e.data));
      }
      // EventSource gives up for good on an HTTP error and retries at a
      // fixed pace otherwise: take over with a backoff of our own.
      es.onerror = () => {
        this.close();
        this.stale("Reconnecting…");
        const wait = Math.min(maxWait, 1000 * 2 ** this.fails++);
        this.timer = setTimeout(() => this.connect(), wait / 2 + Math.random() * wait / 2);
      };
    }

    close() {
      clearTimeout(this.timer);
      if (this.es) { this.es.close(); this.es = null; }
    }

    stale(text) {
      this.badge.classList.add("gp-reconnecting");
      const s = this.parts.status;
      s.textContent = text;
      el("span", "gp-dot gp-stale", s);
      s.prepend(s.lastChild);
    }

    // swap shows a part as the server rendered it (html/template output of
    // our own origin); the viewer's part names them, to mark their avatar.
    swap(name, html) {
      this.parts[name].innerHTML = html;
      if (name !== "tabs") return;
      const me = this.parts.tabs.querySelector("[data-me]");
      const id = me && me.getAttribute("data-me");
      if (id && /^[0-9A-F]{8}$/.test(id)) {
        this.mine.replaceSync(`[data-u="${id}"]{box-shadow:0 0 0 2px var(--gp-bg),0 0 0 4px var(--gp-accent)}`);
      }
    }
  }

  customElements.define("global-presence", GlobalPresence);
})();
