// Sending (ABI.md "SMTP"): a composed message, raw MIME, or a forward.
using System;
using System.Collections.Generic;
using MailOAuth.Interop;

namespace MailOAuth
{
    public sealed class MailAttachment
    {
        public string Name { get; set; }
        public string ContentType { get; set; }
        /// <summary>A file read with the calling process's rights ...</summary>
        public string Path { get; set; }
        /// <summary>... or the bytes themselves.</summary>
        public byte[] Content { get; set; }

        internal JsonObject ToJson()
        {
            var o = new JsonObject();
            if (Name != null) o.Add("name", Name);
            if (ContentType != null) o.Add("content_type", ContentType);
            if (Path != null) o.Add("path", Path);
            if (Content != null) o.Add("base64", Convert.ToBase64String(Content));
            return o;
        }
    }

    /// <summary>A message to compose and send; From defaults to the mailbox.</summary>
    public sealed class OutgoingMessage
    {
        public string From { get; set; }
        public IList<string> To { get; set; }
        public IList<string> Cc { get; set; }
        public IList<string> Bcc { get; set; }
        public string ReplyTo { get; set; }
        public string Subject { get; set; }
        public string Text { get; set; }
        public string Html { get; set; }
        public IList<MailAttachment> Attachments { get; set; }

        public JsonObject ToJson()
        {
            var o = new JsonObject();
            if (From != null) o.Add("from", From);
            if (To != null) o.Add("to", To);
            if (Cc != null) o.Add("cc", Cc);
            if (Bcc != null) o.Add("bcc", Bcc);
            if (ReplyTo != null) o.Add("reply_to", ReplyTo);
            if (Subject != null) o.Add("subject", Subject);
            if (Text != null) o.Add("text", Text);
            if (Html != null) o.Add("html", Html);
            if (Attachments != null)
            {
                var a = new List<object>();
                foreach (var x in Attachments) a.Add(x.ToJson());
                o.Add("attachments", a);
            }
            return o;
        }
    }

    /// <summary>Keys every SMTP request may carry besides "account".</summary>
    public sealed class SmtpOptions
    {
        /// <summary>The address authenticated as (a shared mailbox); default: the account.</summary>
        public string Mailbox { get; set; }
        public MailServer Server { get; set; }
        public int? TimeoutMs { get; set; }

        internal void AddTo(JsonObject request)
        {
            if (Mailbox != null) request.Add("mailbox", Mailbox);
            if (Server != null) request.Add("server", Server.ToJson());
            if (TimeoutMs.HasValue) request.Add("timeout_ms", TimeoutMs.Value);
        }
    }

    public sealed class SendResult
    {
        public string MessageId { get; private set; }
        public IList<string> Accepted { get; private set; }
        public string ServerReply { get; private set; }
        public JsonObject Json { get; private set; }

        internal SendResult(JsonObject o)
        {
            Json = o;
            MessageId = o.GetString("message_id");
            Accepted = o.GetStrings("accepted");
            ServerReply = o.GetString("server_reply");
        }
    }

    public sealed class MailOAuthSmtp
    {
        private readonly MailOAuthContext _context;

        internal MailOAuthSmtp(MailOAuthContext context) { _context = context; }

        private static JsonObject Base(string account, SmtpOptions options)
        {
            if (account == null) throw new ArgumentNullException("account");
            var r = new JsonObject { { "account", account } };
            if (options != null) options.AddTo(r);
            return r;
        }

        /// <summary>Composes and sends a message. A refused recipient fails the whole send
        /// (SEND_REJECTED, nothing sent, the addresses in MailOAuthException.Rejected).</summary>
        public SendResult Send(string account, OutgoingMessage message, SmtpOptions options = null)
        {
            if (message == null) throw new ArgumentNullException("message");
            var r = Base(account, options);
            r.Add("message", message.ToJson());
            return Send(r);
        }

        /// <summary>Sends from a request document.</summary>
        public SendResult Send(JsonObject request)
        {
            if (request == null) throw new ArgumentNullException("request");
            NativeString s;
            _context.Call(NativeMethods.mailoauth_smtp_send(_context.Handle, Utf8.ToNative(Json.Serialize(request), "request"), out s));
            using (s) return new SendResult(Json.ParseObject(s.Read()));
        }

        /// <summary>Sends MIME bytes as they are (line endings normalised to CRLF). With no
        /// <paramref name="envelopeTo"/> the envelope comes from the From/To/Cc/Bcc headers
        /// (Bcc is then removed from the bytes sent).</summary>
        public SendResult SendMime(string account, byte[] mime, IList<string> envelopeTo = null, string envelopeFrom = null,
                                   SmtpOptions options = null)
        {
            var r = Base(account, options);
            if (envelopeTo == null)
            {
                r.Add("envelope", "from_headers");
            }
            else
            {
                var env = new JsonObject();
                if (envelopeFrom != null) env.Add("from", envelopeFrom);
                env.Add("to", envelopeTo);
                r.Add("envelope", env);
            }
            return SendMime(r, mime);
        }

        public SendResult SendMime(JsonObject request, byte[] mime)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (mime == null) throw new ArgumentNullException("mime");
            NativeString s;
            _context.Call(NativeMethods.mailoauth_smtp_send_mime(_context.Handle, Utf8.ToNative(Json.Serialize(request), "request"),
                mime, mime.LongLength, out s));
            using (s) return new SendResult(Json.ParseObject(s.Read()));
        }

        /// <summary>Forwards a received message: mode "attachment" (message/rfc822),
        /// "inline" or "redirect" (Resent-*).</summary>
        public SendResult Forward(string account, byte[] original, IList<string> to, string mode = "attachment",
                                  string comment = null, SmtpOptions options = null)
        {
            if (to == null) throw new ArgumentNullException("to");
            var r = Base(account, options);
            r.Add("to", to);
            if (mode != null) r.Add("mode", mode);
            if (comment != null) r.Add("comment", comment);
            return Forward(r, original);
        }

        public SendResult Forward(JsonObject request, byte[] original)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (original == null) throw new ArgumentNullException("original");
            NativeString s;
            _context.Call(NativeMethods.mailoauth_smtp_forward(_context.Handle, Utf8.ToNative(Json.Serialize(request), "request"),
                original, original.LongLength, out s));
            using (s) return new SendResult(Json.ParseObject(s.Read()));
        }
    }
}
