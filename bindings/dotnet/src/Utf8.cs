// UTF-8 both ways, on every .NET Framework >= 4.0: no Marshal.PtrToStringUTF8
// (missing from the 4.x reference assemblies) and no LPUTF8Str (4.7+).
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace MailOAuth.Interop
{
    internal static class Utf8
    {
        /// <summary>Throws on lone surrogates (sending) and invalid bytes (receiving)
        /// instead of silently substituting U+FFFD.</summary>
        internal static readonly UTF8Encoding Strict = new UTF8Encoding(false, true);

        /// <summary>A NUL-terminated UTF-8 copy of <paramref name="s"/> (null → C NULL).</summary>
        internal static byte[] ToNative(string s, string paramName)
        {
            if (s == null) return null;
            if (s.IndexOf('\0') >= 0)
                throw new ArgumentException("the text contains a NUL character", paramName);
            int n;
            try
            {
                n = Strict.GetByteCount(s);
            }
            catch (EncoderFallbackException e)
            {
                throw new ArgumentException("the text is not valid Unicode (a lone surrogate)", paramName, e);
            }
            var buf = new byte[n + 1];
            Strict.GetBytes(s, 0, s.Length, buf, 0);
            return buf;                                     // buf[n] == 0
        }

        /// <summary>Reads a NUL-terminated UTF-8 string the library owns (null for NULL).</summary>
        internal static string FromNative(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int len = 0;
            while (Marshal.ReadByte(p, len) != 0) len++;
            var bytes = new byte[len];
            Marshal.Copy(p, bytes, 0, len);
            return Strict.GetString(bytes);
        }
    }
}
