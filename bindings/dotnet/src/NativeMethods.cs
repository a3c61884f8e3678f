// The P/Invoke declarations of include/mailoauth.h (ABI.md). Rules, checked
// by tools/check_pinvoke.py: Cdecl and ExactSpelling on every import, the
// bare library name, UTF-8 byte[] in, SafeHandles or IntPtr out, int/uint/
// long (int32/uint32/int64) and IntPtr only: no bool, no C long, no string.
using System;
using System.Runtime.InteropServices;

namespace MailOAuth.Interop
{
    /// <summary>The raw C ABI. Internal: hosts use MailOAuthContext and friends.</summary>
    internal static class NativeMethods
    {
        /// <summary>Bare name: mailoauth.dll on Windows, libmailoauth.so on Linux.</summary>
        internal const string Lib = "mailoauth";

        // ---- callbacks (user_data first, as in the header) ------------------------------------

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogFn(IntPtr userData, int level, IntPtr message);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int StoreLoadFn(IntPtr userData, IntPtr key, IntPtr sink);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int StoreSaveFn(IntPtr userData, IntPtr key, IntPtr data, long len);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int StoreLockFn(IntPtr userData, IntPtr key, int doLock, int timeoutMs);

        // ---- library -----------------------------------------------------------------------

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr mailoauth_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern uint mailoauth_abi_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr mailoauth_result_str(int code);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_last_error(out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_last_error_message(byte[] buf, int bufLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_set_logger(int maxLevel, LogFn fn, IntPtr userData);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void mailoauth_string_free(IntPtr s);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void mailoauth_secret_free(IntPtr s);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void mailoauth_bytes_free(IntPtr p, long len);

        // ---- context -----------------------------------------------------------------------

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_new(byte[] configJson, uint abiVersion, out ContextHandle outCtx);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_describe(ContextHandle ctx, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_cancel(ContextHandle ctx);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void mailoauth_context_free(IntPtr ctx);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_set_cache_key(ContextHandle ctx, byte[] key, long keyLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_cache_reset(ContextHandle ctx);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_set_store(ContextHandle ctx, StoreLoadFn load, StoreSaveFn save,
                                                               StoreLockFn lockFn, IntPtr userData);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_blob_set(IntPtr sink, byte[] data, long len);

        // ---- consent and operations --------------------------------------------------------

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_consent_begin(ContextHandle ctx, byte[] requestJson, out OpHandle outOp);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_account_test_begin(ContextHandle ctx, byte[] requestJson, out OpHandle outOp);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_op_wait(OpHandle op, int timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_op_info(OpHandle op, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_op_result(OpHandle op, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_op_cancel(OpHandle op);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void mailoauth_op_free(IntPtr op);

        // ---- tokens and accounts -----------------------------------------------------------

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_token_get(ContextHandle ctx, byte[] account, byte[] protocols, int flags,
                                                       out NativeSecret outToken);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_account_list(ContextHandle ctx, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_account_remove(ContextHandle ctx, byte[] account);

        // ---- SMTP --------------------------------------------------------------------------

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_smtp_send(ContextHandle ctx, byte[] requestJson, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_smtp_send_mime(ContextHandle ctx, byte[] requestJson, byte[] mime, long mimeLen,
                                                            out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_smtp_forward(ContextHandle ctx, byte[] requestJson, byte[] original,
                                                          long originalLen, out NativeString outJson);

        // ---- mailboxes ---------------------------------------------------------------------

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_open(ContextHandle ctx, byte[] requestJson, out MailboxHandle outMb);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_poll(MailboxHandle mb, int maxMessages, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_fetch(MailboxHandle mb, byte[] id, out NativeBytes outBytes, out long outLen);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_fetch_to_file(MailboxHandle mb, byte[] id, byte[] path);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_ack(MailboxHandle mb, byte[] id, byte[] action);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_wait(MailboxHandle mb, int timeoutMs);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_list_folders(MailboxHandle mb, out NativeString outJson);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_cancel(MailboxHandle mb);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void mailoauth_mailbox_free(IntPtr mb);
    }
}
