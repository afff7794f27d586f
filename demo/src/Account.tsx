// Who is logged in, login by one-time link, and a private list that only
// this user's sessions can read or write (`/user/<id>`, enforced by the
// server's rules and re-checked by every replica).

import type { User } from "@ibexdb/db";
import { useDB, useQuery, useUser } from "@ibexdb/react";
import { type FormEvent, useEffect, useState } from "react";

import { Todo } from "./schema";

/** The token of a login link, taken from the URL once (StrictMode runs
 * effects twice; a token works only once). */
let pendingToken: string | null = new URLSearchParams(location.search).get("ibex-login");

export function Account() {
  const db = useDB();
  const user = useUser();
  const [email, setEmail] = useState("");
  const [message, setMessage] = useState("");
  // A link from the URL waits for the user's yes: someone else's link must
  // not silently sign this browser into their account (login CSRF).
  const [offer, setOffer] = useState<{ token: string; email: string } | null>(null);

  useEffect(() => {
    const token = pendingToken;
    if (!token) return;
    pendingToken = null;
    const url = new URL(location.href);
    url.searchParams.delete("ibex-login");
    history.replaceState(null, "", url);
    db.loginInfo(token).then(
      (to) => setOffer({ token, email: to }),
      (e: Error) => setMessage(`Login failed: ${e.message}`),
    );
  }, [db]);

  const accept = () => {
    if (!offer) return;
    const { token } = offer;
    setOffer(null);
    setMessage("Logging in…");
    db.completeLogin(token).then(
      (u) => setMessage(`Logged in as ${u.email}`),
      (e: Error) => setMessage(`Login failed: ${e.message}`),
    );
  };

  const login = (e: FormEvent) => {
    e.preventDefault();
    db.login(email).then(
      (to) => setMessage(`Login link for ${to} sent (development server: see its log)`),
      (err: Error) => setMessage(`Login failed: ${err.message}`),
    );
  };

  return (
    <section className="account" data-testid="account">
      {offer && (
        <p data-testid="login-offer">
          Log in as <strong>{offer.email}</strong>?{" "}
          <button type="button" onClick={accept}>
            Log in as {offer.email}
          </button>{" "}
          <button type="button" onClick={() => (setOffer(null), setMessage("Login cancelled"))}>
            Cancel
          </button>
        </p>
      )}
      {user ? (
        <>
          <p>
            Logged in as <strong data-testid="user">{user.email || user.id}</strong>{" "}
            <button type="button" className="logout" onClick={() => void db.logout().then(() => setMessage("Logged out"))}>
              Log out
            </button>
          </p>
          <PrivateTodos user={user} />
        </>
      ) : (
        <form onSubmit={login}>
          <input className="login-email" type="email" placeholder="you@example.org" aria-label="E-mail" value={email} onChange={(e) => setEmail(e.target.value)} required />
          <button type="submit">Log in</button>
        </form>
      )}
      {message && <p data-testid="account-message">{message}</p>}
    </section>
  );
}

function PrivateTodos({ user }: { user: User }) {
  const db = useDB();
  const repo = `/user/${user.id}`;
  const items = useQuery({ source: repo, schema: Todo, sortBy: "createdAt" }, [repo]);
  const [title, setTitle] = useState("");
  const add = (e: FormEvent) => {
    e.preventDefault();
    if (!title.trim()) return;
    db.create(repo, Todo, { title: title.trim(), createdAt: new Date() });
    setTitle("");
  };
  return (
    <div className="private">
      <form onSubmit={add}>
        <input placeholder="A private todo (only you can see it)" aria-label="Private todo" value={title} onChange={(e) => setTitle(e.target.value)} />
      </form>
      <ul data-testid="private-list">
        {items.map((t) => (
          <li key={t.key} data-testid="private-todo">
            {t.get("title")}
          </li>
        ))}
      </ul>
    </div>
  );
}
