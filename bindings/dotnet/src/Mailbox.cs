// Polling a mailbox (ABI.md "Mailboxes"): poll, fetch, ack, wait, folders,
// each honouring a CancellationToken through mailoauth_mailbox_cancel.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
using MailOAuth.Interop;

namespace MailOAuth
{
    public sealed class MailboxRequest
    {
        public string Account { get; set; }
        /// <summary>The mailbox authenticated as (a shared mailbox); default: the account.</summary>
        public string Mailbox { get; set; }
        /// <summary>"imap" or "pop3".</summary>
        public string Protocol { get; set; }
        public string Folder { get; set; }
        /// <summary>"all" or "new" (first open only: what is there counts as acknowledged).</summary>
        public string Start { get; set; }
        public int? LockTimeoutMs { get; set; }
        public MailServer Server { get; set; }

        public JsonObject ToJson()
        {
            var o = new JsonObject();
            if (Account != null) o.Add("account", Account);
            if (Mailbox != null) o.Add("mailbox", Mailbox);
            if (Protocol != null) o.Add("protocol", Protocol);
            if (Folder != null) o.Add("folder", Folder);
            if (Start != null) o.Add("start", Start);
            if (LockTimeoutMs.HasValue) o.Add("lock_timeout_ms", LockTimeoutMs.Value);
            if (Server != null) o.Add("server", Server.ToJson());
            return o;
        }
    }

    /// <summary>A message not acknowledged yet, as poll lists it.</summary>
    public sealed class MailMessageInfo
    {
        /// <summary>Stable across connections (IMAP: UIDVALIDITY:UID; POP3: the UIDL).</summary>
        public string Id { get; private set; }
        public long Size { get; private set; }
        public string From { get; private set; }
        public IList<string> To { get; private set; }
        public string Subject { get; private set; }
        /// <summary>RFC 3339.</summary>
        public string Date { get; private set; }
        public string MessageId { get; private set; }
        public JsonObject Json { get; private set; }

        internal MailMessageInfo(JsonObject o)
        {
            Json = o;
            Id = o.GetString("id");
            Size = o.GetInt64("size") ?? 0;
            From = o.GetString("from");
            To = o.GetStrings("to");
            Subject = o.GetString("subject");
            Date = o.GetString("date");
            MessageId = o.GetString("message_id");
        }
    }

    public sealed class MailFolder
    {
        public string Name { get; private set; }
        public string Delimiter { get; private set; }
        /// <summary>inbox, sent, drafts, trash, junk, archive, all, flagged, or null.</summary>
        public string Special { get; private set; }

        internal MailFolder(JsonObject o)
        {
            Name = o.GetString("name");
            Delimiter = o.GetString("delimiter");
            Special = o.GetString("special");
        }
    }

    /// <summary>What an acknowledgement does on the server.</summary>
    public static class MailboxAction
    {
        /// <summary>Mark \Seen (POP3: same as Keep).</summary>
        public const string Seen = "seen";
        public const string Delete = "delete";
        /// <summary>Remember as processed, change nothing on the server.</summary>
        public const string Keep = "keep";

        /// <summary>Move to a folder (IMAP only).</summary>
        public static string MoveTo(string folder)
        {
            if (folder == null) throw new ArgumentNullException("folder");
            return "move:" + folder;
        }
    }

    /// <summary>An open mailbox. Its calls are serialised; a CancellationToken cancels the call
    /// running on it (OperationCanceledException; the next call reconnects). Delivery to the
    /// host is at-least-once: only an acknowledged message stops being returned by Poll.</summary>
    public sealed class Mailbox : IDisposable
    {
        private readonly MailboxHandle _handle;
        private readonly MailOAuthContext _context;

        internal Mailbox(MailboxHandle handle, MailOAuthContext context)
        {
            _handle = handle;
            _context = context;
        }

        internal MailboxHandle Handle { get { return _handle; } }

        private NativeCancellation Scope(CancellationToken ct)
        {
            return new NativeCancellation(ct, () => NativeMethods.mailoauth_mailbox_cancel(_handle));
        }

        /// <summary>The messages not acknowledged yet, oldest first, at most <paramref name="maxMessages"/>.</summary>
        public IList<MailMessageInfo> Poll(int maxMessages = 100, CancellationToken cancellationToken = default(CancellationToken))
        {
            NativeString s;
            using (var c = Scope(cancellationToken))
                c.Check(NativeMethods.mailoauth_mailbox_poll(_handle, maxMessages, out s));
            var result = new List<MailMessageInfo>();
            using (s)
                foreach (var x in Json.ParseArray(s.Read()))
                    if (x is JsonObject) result.Add(new MailMessageInfo((JsonObject)x));
            return result;
        }

        /// <summary>The raw RFC 5322 bytes of one message.</summary>
        public byte[] Fetch(string id, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (id == null) throw new ArgumentNullException("id");
            NativeBytes bytes;
            long len;
            using (var c = Scope(cancellationToken))
            {
                int rc = NativeMethods.mailoauth_mailbox_fetch(_handle, Utf8.ToNative(id, "id"), out bytes, out len);
                if (rc == ResultCode.Ok) bytes.Length = len;
                c.Check(rc);
            }
            using (bytes) return bytes.Read();
        }

        /// <summary>Streams one message's raw bytes to a file (created or replaced).</summary>
        public void FetchToFile(string id, string path, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (id == null) throw new ArgumentNullException("id");
            if (path == null) throw new ArgumentNullException("path");
            using (var c = Scope(cancellationToken))
                c.Check(NativeMethods.mailoauth_mailbox_fetch_to_file(_handle, Utf8.ToNative(id, "id"), Utf8.ToNative(path, "path")));
        }

        /// <summary>Acknowledges a message (MailboxAction.*): recorded durably first, then the
        /// server is changed.</summary>
        public void Ack(string id, string action, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (id == null) throw new ArgumentNullException("id");
            if (action == null) throw new ArgumentNullException("action");
            using (var c = Scope(cancellationToken))
                c.Check(NativeMethods.mailoauth_mailbox_ack(_handle, Utf8.ToNative(id, "id"), Utf8.ToNative(action, "action")));
        }

        /// <summary>Waits for new mail: true when new mail may be there, false when none came
        /// within <paramref name="timeoutMs"/> (0: only looks).</summary>
        public bool Wait(int timeoutMs, CancellationToken cancellationToken = default(CancellationToken))
        {
            using (var c = Scope(cancellationToken))
            {
                int rc = NativeMethods.mailoauth_mailbox_wait(_handle, timeoutMs);
                if (rc == ResultCode.Timeout) return false;
                c.Check(rc);
                return true;
            }
        }

        /// <summary>Wait on a dedicated thread, for async hosts.</summary>
        public Task<bool> WaitAsync(int timeoutMs, CancellationToken cancellationToken = default(CancellationToken))
        {
            return Task.Factory.StartNew(() => Wait(timeoutMs, cancellationToken), cancellationToken,
                                         TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        /// <summary>The folders of an IMAP mailbox with their special use.</summary>
        public IList<MailFolder> ListFolders(CancellationToken cancellationToken = default(CancellationToken))
        {
            NativeString s;
            using (var c = Scope(cancellationToken))
                c.Check(NativeMethods.mailoauth_mailbox_list_folders(_handle, out s));
            var result = new List<MailFolder>();
            using (s)
                foreach (var x in Json.ParseArray(s.Read()))
                    if (x is JsonObject) result.Add(new MailFolder((JsonObject)x));
            return result;
        }

        /// <summary>Cancels the call running on this mailbox (any thread).</summary>
        public void Cancel()
        {
            _context.Call(NativeMethods.mailoauth_mailbox_cancel(_handle));
        }

        /// <summary>Closes the session in the background and releases the poll state's lock.</summary>
        public void Dispose()
        {
            _handle.Dispose();
        }
    }
}
