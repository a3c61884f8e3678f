// Raw-pointer twins of some imports for the boundary tests: NULL and stale
// handles, NULL outputs, invalid UTF-8. Same declaration rules as the binding.
using System;
using System.Runtime.InteropServices;
using MailOAuth.Interop;

namespace MailOAuth.Tests
{
    internal static class Raw
    {
        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_new(byte[] configJson, uint abiVersion, IntPtr outCtx);

        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_context_describe(IntPtr ctx, IntPtr outJson);

        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_token_get(IntPtr ctx, byte[] account, byte[] protocols, int flags, IntPtr outToken);

        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_mailbox_poll(IntPtr mb, int maxMessages, IntPtr outJson);

        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_op_wait(IntPtr op, int timeoutMs);

        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_smtp_send(IntPtr ctx, byte[] requestJson, IntPtr outJson);

        [DllImport(NativeMethods.Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int mailoauth_account_test_begin(IntPtr ctx, byte[] requestJson, IntPtr outOp);

        /// <summary>The calling thread's last error code (0 when none).</summary>
        internal static int LastCode()
        {
            NativeString s;
            if (NativeMethods.mailoauth_last_error(out s) != 0) return -1;
            using (s) return (int)(Json.ParseObject(s.Read()).GetInt64("code") ?? -1);
        }

        internal static JsonObject LastError()
        {
            NativeString s;
            if (NativeMethods.mailoauth_last_error(out s) != 0) return null;
            using (s) return Json.ParseObject(s.Read());
        }
    }

    /// <summary>DELIBERATELY WRONG declarations, used only by the negative control that proves
    /// the foreign-allocator build catches a host freeing library memory with the C runtime:
    /// the marshaller frees an `out string` with free() / CoTaskMemFree.</summary>
    internal static class Wrong
    {
        // pinvoke-lint: allow string (negative control, run only in a child process)
        [DllImport(NativeMethods.Lib, EntryPoint = "mailoauth_last_error", CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int LastErrorAsString(out string json);
    }
}
