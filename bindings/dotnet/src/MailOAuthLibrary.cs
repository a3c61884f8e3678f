// Process-wide parts: loading (the right DLL for the process on Windows),
// the ABI check, the version, and the logger (one per process in the C ABI).
using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using MailOAuth.Interop;

namespace MailOAuth
{
    /// <summary>Log levels of the library's logger.</summary>
    public enum LogLevel
    {
        Off = 0,
        Error = 1,
        Warning = 2,
        Info = 3,
        Debug = 4,
        Trace = 5,
    }

    public static class MailOAuthLibrary
    {
        /// <summary>MAILOAUTH_ABI_VERSION of the header this binding was written against.</summary>
        public const uint AbiVersion = 1;

        private static readonly object LoadGate = new object();
        private static volatile bool _loaded;

        /// <summary>Loads the native library and checks its ABI version (a library older than
        /// this binding throws ABI_MISMATCH). Called by every entry point; idempotent.</summary>
        public static void EnsureLoaded()
        {
            if (_loaded) return;
            lock (LoadGate)
            {
                if (_loaded) return;
                WindowsLoader.PreloadForProcessArchitecture();
                uint native;
                try
                {
                    native = NativeMethods.mailoauth_abi_version();
                }
                catch (DllNotFoundException e)
                {
                    throw new DllNotFoundException(
                        "the native mailoauth library was not found: put mailoauth.dll (built for this process's " +
                        (IntPtr.Size == 8 ? "x64" : "x86") + " architecture) next to the application or into its " +
                        (IntPtr.Size == 8 ? "x64" : "x86") + " subfolder (libmailoauth.so on Linux: LD_LIBRARY_PATH)", e);
                }
                catch (BadImageFormatException e)
                {
                    throw new BadImageFormatException(
                        "mailoauth.dll does not match this process's architecture (" + (IntPtr.Size == 8 ? "x64" : "x86") +
                        "): ship the x64 and the x86 build in x64\\ and x86\\", e);
                }
                if (native < AbiVersion)
                    throw new MailOAuthException(ResultCode.AbiMismatch, "ABI_MISMATCH",
                        "the native mailoauth library has ABI version " + native + ", this binding needs " + AbiVersion +
                        " or newer: install the mailoauth library that came with this binding",
                        "ship mailoauth.dll / libmailoauth.so from the same release as MailOAuth.dll");
                _loaded = true;
            }
        }

        /// <summary>The native library's version, e.g. "0.1.0".</summary>
        public static string Version
        {
            get
            {
                EnsureLoaded();
                return Utf8.FromNative(NativeMethods.mailoauth_version());
            }
        }

        /// <summary>The native library's ABI version (mailoauth_abi_version).</summary>
        public static uint NativeAbiVersion
        {
            get
            {
                EnsureLoaded();
                return NativeMethods.mailoauth_abi_version();
            }
        }

        // ---- the logger ---------------------------------------------------------------------

        // One delegate for the whole process, in a static field: never collected.
        private static readonly NativeMethods.LogFn LogTrampoline = OnLog;
        private static readonly object LoggerGate = new object();
        private static GCHandle _loggerState;

        private sealed class LoggerBox
        {
            internal Action<LogLevel, string> Logger;
            internal Exception Error;
        }

        /// <summary>Installs, replaces or (null / LogLevel.Off) removes the process-wide logger.
        /// The callback runs on library threads, must return quickly and must not call into
        /// the library; an exception it throws is kept from the library and reported by
        /// <see cref="TakeLoggerException"/>. Messages never contain tokens or secrets.
        /// Returns only when no call of the previous logger is running.</summary>
        public static void SetLogger(LogLevel maxLevel, Action<LogLevel, string> logger)
        {
            EnsureLoaded();
            lock (LoggerGate)
            {
                GCHandle old = _loggerState, fresh = default(GCHandle);
                IntPtr userData = IntPtr.Zero;
                bool on = logger != null && maxLevel != LogLevel.Off;
                if (on)
                {
                    fresh = GCHandle.Alloc(new LoggerBox { Logger = logger });
                    userData = GCHandle.ToIntPtr(fresh);
                }
                int rc = NativeMethods.mailoauth_set_logger(on ? (int)maxLevel : 0, on ? LogTrampoline : null, userData);
                if (rc != ResultCode.Ok)
                {
                    var e = MailOAuthException.FromLastError(rc);
                    if (fresh.IsAllocated) fresh.Free();
                    throw e;
                }
                _loggerState = fresh;
                if (old.IsAllocated) old.Free();            // the library no longer calls with it
            }
        }

        /// <summary>The first exception the current logger threw since the last call (or null).</summary>
        public static Exception TakeLoggerException()
        {
            lock (LoggerGate)
            {
                if (!_loggerState.IsAllocated) return null;
                var box = (LoggerBox)_loggerState.Target;
                return Interlocked.Exchange(ref box.Error, null);
            }
        }

        private static void OnLog(IntPtr userData, int level, IntPtr message)
        {
            try                                             // nothing may unwind into Rust frames
            {
                var box = (LoggerBox)GCHandle.FromIntPtr(userData).Target;
                try
                {
                    box.Logger((LogLevel)level, Utf8.FromNative(message));
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref box.Error, e, null);
                }
            }
            catch (Exception)
            {
                // nothing safe to do here
            }
        }
    }

    /// <summary>On Windows, a .NET Framework process finds no native asset under runtimes/ by
    /// itself: load the DLL of the process's architecture (x64 or x86) before the first call,
    /// from runtimes\win-x64\native\, runtimes\win-x86\native\ or x64\ / x86\ beside the
    /// assembly. Elsewhere (and when the DLL is on the normal search path) nothing happens.</summary>
    internal static class WindowsLoader
    {
        [DllImport("kernel32", EntryPoint = "LoadLibraryW", CharSet = CharSet.Unicode, SetLastError = true,
                   CallingConvention = CallingConvention.Winapi, ExactSpelling = true)]
        private static extern IntPtr LoadLibraryW([MarshalAs(UnmanagedType.LPWStr)] string path);

        internal static void PreloadForProcessArchitecture()
        {
            if (Environment.OSVersion.Platform != PlatformID.Win32NT) return;
            string dir = Path.GetDirectoryName(typeof(WindowsLoader).Assembly.Location);
            if (string.IsNullOrEmpty(dir)) return;
            string rid = IntPtr.Size == 8 ? "win-x64" : "win-x86";
            string arch = IntPtr.Size == 8 ? "x64" : "x86";
            foreach (var candidate in new[]
            {
                Path.Combine(dir, "mailoauth.dll"),
                Path.Combine(Path.Combine(Path.Combine(Path.Combine(dir, "runtimes"), rid), "native"), "mailoauth.dll"),
                Path.Combine(Path.Combine(dir, arch), "mailoauth.dll"),
            })
            {
                if (File.Exists(candidate) && LoadLibraryW(candidate) != IntPtr.Zero) return;
            }
        }
    }

    /// <summary>Ties a CancellationToken to a native cancel function for the duration of one
    /// blocking call. The native cancel only affects a call that is running, so after the
    /// token fires the cancel is repeated (every 20 ms) until the call has returned; the gate
    /// makes sure no cancel is issued after that.</summary>
    internal sealed class NativeCancellation : IDisposable
    {
        private readonly object _gate = new object();
        private readonly Func<int> _cancel;
        private readonly CancellationToken _token;
        private CancellationTokenRegistration _registration;
        private bool _finished;

        internal NativeCancellation(CancellationToken token, Func<int> cancel)
        {
            token.ThrowIfCancellationRequested();
            _token = token;
            _cancel = cancel;
            if (token.CanBeCanceled) _registration = token.Register(OnCancel);
        }

        private void OnCancel()
        {
            if (!CancelOnce()) return;
            ThreadPool.QueueUserWorkItem(_ =>
            {
                while (true)
                {
                    Thread.Sleep(20);
                    if (!CancelOnce()) return;
                }
            });
        }

        /// <summary>Cancels unless the call finished; false when it has.</summary>
        private bool CancelOnce()
        {
            lock (_gate)
            {
                if (_finished) return false;
                try { _cancel(); }
                catch (ObjectDisposedException) { return false; }
                return true;
            }
        }

        /// <summary>Turns CANCELLED caused by this token into OperationCanceledException.</summary>
        internal void Check(int rc)
        {
            if (rc == ResultCode.Ok) return;
            var e = MailOAuthException.FromLastError(rc);
            if (rc == ResultCode.Cancelled && _token.IsCancellationRequested)
                throw new OperationCanceledException(e.Message, e, _token);
            throw e;
        }

        public void Dispose()
        {
            lock (_gate) _finished = true;
            _registration.Dispose();
        }
    }
}
