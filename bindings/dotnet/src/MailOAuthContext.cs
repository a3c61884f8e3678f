// The context: configuration, cache, host store, and the entry to consent,
// tokens, SMTP and mailboxes. Thread-safe; share one per configuration.
using System;
using System.Runtime.InteropServices;
using System.Threading;
using MailOAuth.Interop;

namespace MailOAuth
{
    /// <summary>A token cache in the host's own storage (e.g. rows of the CRM's database):
    /// opaque, already protected blobs, one per key ("grant:&lt;account&gt;",
    /// "poll:&lt;account&gt;/&lt;protocol&gt;/&lt;folder&gt;"). Use cache protection "key".
    /// Methods run on library threads inside a call into the library, and must not call
    /// into the library.</summary>
    public interface IHostStore
    {
        /// <summary>The blob of <paramref name="key"/>, or null when there is none.</summary>
        byte[] Load(string key);
        /// <summary>Stores the blob; an empty array removes it.</summary>
        void Save(string key, byte[] data);
        /// <summary>Locks (<paramref name="acquire"/> true, waiting up to
        /// <paramref name="timeoutMs"/>) or unlocks the key; false when the lock was not had
        /// in time (the library answers BUSY).</summary>
        bool Lock(string key, bool acquire, int timeoutMs);
    }

    public sealed class MailOAuthContext : IDisposable
    {
        private readonly ContextHandle _handle;
        private readonly object _storeGate = new object();

        /// <summary>A context from a configuration document (ABI.md "Context").</summary>
        public MailOAuthContext(string configJson)
        {
            if (configJson == null) throw new ArgumentNullException("configJson");
            MailOAuthLibrary.EnsureLoaded();
            ContextHandle h;
            int rc = NativeMethods.mailoauth_context_new(Utf8.ToNative(configJson, "configJson"), MailOAuthLibrary.AbiVersion, out h);
            if (rc != ResultCode.Ok)
            {
                var e = MailOAuthException.FromLastError(rc);
                h.Dispose();
                throw e;
            }
            _handle = h;
            Tokens = new MailOAuthTokens(this);
            Smtp = new MailOAuthSmtp(this);
        }

        public MailOAuthContext(JsonObject config) : this(Json.Serialize(Required(config, "config"))) { }

        public MailOAuthContext(MailOAuthOptions options) : this(Json.Serialize(Required(options, "options").ToJson())) { }

        private static T Required<T>(T v, string name) where T : class
        {
            if (v == null) throw new ArgumentNullException(name);
            return v;
        }

        internal ContextHandle Handle { get { return _handle; } }

        /// <summary>Silent tokens, cached accounts, sign-out.</summary>
        public MailOAuthTokens Tokens { get; private set; }

        /// <summary>Sending mail.</summary>
        public MailOAuthSmtp Smtp { get; private set; }

        /// <summary>The resolved configuration (endpoints, scopes, servers; never a secret).</summary>
        public JsonObject Describe()
        {
            NativeString s;
            Call(NativeMethods.mailoauth_context_describe(_handle, out s));
            using (s) return Json.ParseObject(s.Read());
        }

        /// <summary>The 32-byte key for cache protection "key" (copied; zeroed on free).</summary>
        public void SetCacheKey(byte[] key)
        {
            if (key == null) throw new ArgumentNullException("key");
            Call(NativeMethods.mailoauth_context_set_cache_key(_handle, key, key.LongLength));
        }

        /// <summary>Moves an unreadable store aside and starts empty.</summary>
        public void CacheReset()
        {
            Call(NativeMethods.mailoauth_cache_reset(_handle));
        }

        /// <summary>Cancels every call running on this context at this moment (any thread).</summary>
        public void Cancel()
        {
            Call(NativeMethods.mailoauth_context_cancel(_handle));
        }

        /// <summary>Starts a consent (ABI.md "Consent"). Dispose the operation when done.</summary>
        public ConsentOperation BeginConsent(ConsentRequest request)
        {
            if (request == null) throw new ArgumentNullException("request");
            return BeginConsent(request.ToJson());
        }

        /// <summary>Starts a consent from a request document.</summary>
        public ConsentOperation BeginConsent(JsonObject request)
        {
            if (request == null) throw new ArgumentNullException("request");
            OpHandle op;
            int rc = NativeMethods.mailoauth_consent_begin(_handle, Utf8.ToNative(Json.Serialize(request), "request"), out op);
            Call(rc, op);
            return new ConsentOperation(op, this);
        }

        /// <summary>The "Test settings" button: a silent token, SMTP EHLO + AUTH, IMAP login +
        /// SELECT, POP3 login + STAT, without sending or changing anything. No protocols: all.</summary>
        public AccountTestOperation BeginAccountTest(string account, params string[] protocols)
        {
            if (account == null) throw new ArgumentNullException("account");
            var request = new JsonObject { { "account", account } };
            if (protocols != null && protocols.Length > 0) request.Add("protocols", protocols);
            return BeginAccountTest(request);
        }

        /// <summary>The account test from a request document.</summary>
        public AccountTestOperation BeginAccountTest(JsonObject request)
        {
            if (request == null) throw new ArgumentNullException("request");
            OpHandle op;
            int rc;
            try
            {
                rc = NativeMethods.mailoauth_account_test_begin(_handle, Utf8.ToNative(Json.Serialize(request), "request"), out op);
            }
            catch (EntryPointNotFoundException e)
            {
                throw new NotSupportedException("this build of the mailoauth library has no account test (mailoauth_account_test_begin)", e);
            }
            Call(rc, op);
            return new AccountTestOperation(op, this);
        }

        /// <summary>Opens a mailbox (ABI.md "Mailboxes"). Blocks while it waits for the poll
        /// state's lock (LockTimeoutMs) and connects. Dispose the mailbox when done.</summary>
        public Mailbox OpenMailbox(MailboxRequest request)
        {
            if (request == null) throw new ArgumentNullException("request");
            return OpenMailbox(request.ToJson());
        }

        public Mailbox OpenMailbox(JsonObject request)
        {
            if (request == null) throw new ArgumentNullException("request");
            MailboxHandle mb;
            int rc = NativeMethods.mailoauth_mailbox_open(_handle, Utf8.ToNative(Json.Serialize(request), "request"), out mb);
            Call(rc, mb);
            return new Mailbox(mb, this);
        }

        // ---- host store ---------------------------------------------------------------------

        private static readonly NativeMethods.StoreLoadFn LoadTrampoline = OnLoad;
        private static readonly NativeMethods.StoreSaveFn SaveTrampoline = OnSave;
        private static readonly NativeMethods.StoreLockFn LockTrampoline = OnLock;

        private sealed class StoreBox
        {
            internal IHostStore Store;
            internal Exception Error;
        }

        /// <summary>Routes the token cache and the mailbox poll state through the host's store
        /// (null: back to files). Returns only when no callback of a previous registration runs.
        /// The store stays referenced until it is replaced or the context is disposed.</summary>
        public void SetStore(IHostStore store)
        {
            lock (_storeGate)
            {
                GCHandle old = _handle.StoreState, fresh = default(GCHandle);
                IntPtr userData = IntPtr.Zero;
                if (store != null)
                {
                    fresh = GCHandle.Alloc(new StoreBox { Store = store });
                    userData = GCHandle.ToIntPtr(fresh);
                }
                int rc = store == null
                    ? NativeMethods.mailoauth_context_set_store(_handle, null, null, null, IntPtr.Zero)
                    : NativeMethods.mailoauth_context_set_store(_handle, LoadTrampoline, SaveTrampoline, LockTrampoline, userData);
                if (rc != ResultCode.Ok)
                {
                    var e = MailOAuthException.FromLastError(rc);
                    if (fresh.IsAllocated) fresh.Free();
                    throw e;
                }
                _handle.StoreState = fresh;
                if (old.IsAllocated) old.Free();
            }
        }

        /// <summary>The host store from three delegates (lockFn may be null: no locking).</summary>
        public void SetStore(Func<string, byte[]> load, Action<string, byte[]> save, Func<string, bool, int, bool> lockFn)
        {
            if (load == null) throw new ArgumentNullException("load");
            if (save == null) throw new ArgumentNullException("save");
            SetStore(new DelegateStore(load, save, lockFn));
        }

        private sealed class DelegateStore : IHostStore
        {
            private readonly Func<string, byte[]> _load;
            private readonly Action<string, byte[]> _save;
            private readonly Func<string, bool, int, bool> _lock;

            internal DelegateStore(Func<string, byte[]> load, Action<string, byte[]> save, Func<string, bool, int, bool> lockFn)
            {
                _load = load;
                _save = save;
                _lock = lockFn;
            }

            public byte[] Load(string key) { return _load(key); }
            public void Save(string key, byte[] data) { _save(key, data); }
            public bool Lock(string key, bool acquire, int timeoutMs) { return _lock == null || _lock(key, acquire, timeoutMs); }
        }

        private static StoreBox Box(IntPtr userData) { return (StoreBox)GCHandle.FromIntPtr(userData).Target; }

        private static void Keep(StoreBox box, Exception e) { Interlocked.CompareExchange(ref box.Error, e, null); }

        private static int OnLoad(IntPtr userData, IntPtr key, IntPtr sink)
        {
            try
            {
                var box = Box(userData);
                try
                {
                    byte[] data = box.Store.Load(Utf8.FromNative(key));
                    if (data == null) return 0;
                    return NativeMethods.mailoauth_blob_set(sink, data, data.LongLength);
                }
                catch (Exception e) { Keep(box, e); return 1; }
            }
            catch (Exception) { return 1; }
        }

        private static int OnSave(IntPtr userData, IntPtr key, IntPtr data, long len)
        {
            try
            {
                var box = Box(userData);
                try
                {
                    if (len < 0 || len > int.MaxValue) return 1;
                    var bytes = new byte[len];
                    if (len > 0) Marshal.Copy(data, bytes, 0, (int)len);
                    box.Store.Save(Utf8.FromNative(key), bytes);
                    return 0;
                }
                catch (Exception e) { Keep(box, e); return 1; }
            }
            catch (Exception) { return 1; }
        }

        private static int OnLock(IntPtr userData, IntPtr key, int doLock, int timeoutMs)
        {
            try
            {
                var box = Box(userData);
                try { return box.Store.Lock(Utf8.FromNative(key), doLock != 0, timeoutMs) ? 0 : 1; }
                catch (Exception e) { Keep(box, e); return 1; }
            }
            catch (Exception) { return 1; }
        }

        /// <summary>The first exception a host store callback threw since the last failure
        /// (it is also attached as InnerException to the MailOAuthException of that call).</summary>
        internal Exception TakeStoreError()
        {
            lock (_storeGate)
            {
                if (!_handle.StoreState.IsAllocated) return null;
                return Interlocked.Exchange(ref ((StoreBox)_handle.StoreState.Target).Error, null);
            }
        }

        /// <summary>Throws the last error (with a store callback's exception inside) on failure.</summary>
        internal void Call(int rc)
        {
            if (rc != ResultCode.Ok) throw MailOAuthException.FromLastError(rc, TakeStoreErrorSafe());
        }

        /// <summary>As Call, disposing the (invalid) output handle on failure.</summary>
        internal void Call(int rc, SafeHandle output)
        {
            if (rc == ResultCode.Ok) return;
            var e = MailOAuthException.FromLastError(rc, TakeStoreErrorSafe());
            output.Dispose();
            throw e;
        }

        private Exception TakeStoreErrorSafe()
        {
            try { return TakeStoreError(); }
            catch (ObjectDisposedException) { return null; }
        }

        /// <summary>Frees the context; calls still running on it are cancelled. Child
        /// operations and mailboxes keep working until they are disposed.</summary>
        public void Dispose()
        {
            _handle.Dispose();
        }
    }
}
