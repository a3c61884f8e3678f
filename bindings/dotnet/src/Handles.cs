// One SafeHandle per handle type, plus the three kinds of library-owned
// memory. Each is released exactly once, through the library's own free
// function, also when only the finalizer sees it (the *_free functions work
// on any thread and never block).
using System;
using System.Runtime.InteropServices;

namespace MailOAuth.Interop
{
    /// <summary>mailoauth_context*; also owns the GCHandle of the host store registration,
    /// so both go together even when only finalized.</summary>
    internal sealed class ContextHandle : SafeHandle
    {
        internal GCHandle StoreState;

        private ContextHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.mailoauth_context_free(handle);   // afterwards no store callback runs
            if (StoreState.IsAllocated) StoreState.Free();
            return true;
        }
    }

    /// <summary>mailoauth_op* (a consent or an account test).</summary>
    internal sealed class OpHandle : SafeHandle
    {
        private OpHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.mailoauth_op_free(handle);
            return true;
        }
    }

    /// <summary>mailoauth_mailbox*.</summary>
    internal sealed class MailboxHandle : SafeHandle
    {
        private MailboxHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.mailoauth_mailbox_free(handle);
            return true;
        }
    }

    /// <summary>A NUL-terminated UTF-8 char* the library handed over.</summary>
    internal abstract class NativeText : SafeHandle
    {
        protected NativeText() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        /// <summary>Copies the UTF-8 text out (null for a NULL pointer).</summary>
        internal string Read()
        {
            if (IsInvalid) return null;
            bool added = false;
            try
            {
                DangerousAddRef(ref added);
                return Utf8.FromNative(handle);
            }
            finally
            {
                if (added) DangerousRelease();
            }
        }
    }

    /// <summary>A char* the library handed over; freed with mailoauth_string_free.</summary>
    internal sealed class NativeString : NativeText
    {
        private NativeString() { }

        protected override bool ReleaseHandle()
        {
            NativeMethods.mailoauth_string_free(handle);
            return true;
        }
    }

    /// <summary>A token the library handed over; freed with mailoauth_secret_free, which
    /// zeroes it first.</summary>
    internal sealed class NativeSecret : NativeText
    {
        private NativeSecret() { }

        protected override bool ReleaseHandle()
        {
            NativeMethods.mailoauth_secret_free(handle);
            return true;
        }
    }

    /// <summary>A uint8_t* the library handed over; freed with mailoauth_bytes_free(p, len).
    /// The length is set by the caller right after the call that returned it.</summary>
    internal sealed class NativeBytes : SafeHandle
    {
        internal long Length;

        private NativeBytes() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }

        protected override bool ReleaseHandle()
        {
            NativeMethods.mailoauth_bytes_free(handle, Length);
            return true;
        }

        internal byte[] Read()
        {
            if (IsInvalid) return null;
            if (Length < 0 || Length > int.MaxValue)
                throw new InvalidOperationException("a returned buffer is larger than a .NET array can hold");
            bool added = false;
            try
            {
                DangerousAddRef(ref added);
                var result = new byte[(int)Length];
                Marshal.Copy(handle, result, 0, result.Length);
                return result;
            }
            finally
            {
                if (added) DangerousRelease();
            }
        }
    }
}
