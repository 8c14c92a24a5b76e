/* JPEG decoding through the system's libjpeg(-turbo): JFIF bytes in, packed RGB8 out, with
 * optional DCT scaling (1/2, 1/4, 1/8). Warnings (truncated data, corrupt segments) are
 * errors here, so a damaged frame is never returned as a grey-filled picture; the Rust side
 * then tries its pure-Rust decoder, which is more lenient on merely unusual files. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <jpeglib.h>

struct fc_derror {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

/* Heap state, so its fields are well defined after longjmp. */
struct fc_dstate {
    struct jpeg_decompress_struct cinfo;
    struct fc_derror error;
};

static void fc_derror_exit(j_common_ptr cinfo) {
    struct fc_derror *err = (struct fc_derror *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* msg_level < 0 is a warning: treat it as fatal. Trace messages (>= 0) are ignored. */
static void fc_demit(j_common_ptr cinfo, int msg_level) {
    if (msg_level < 0) {
        fc_derror_exit(cinfo);
    }
}

static struct fc_dstate *fc_dopen(void) {
    struct fc_dstate *st = calloc(1, sizeof(struct fc_dstate));
    if (st == NULL) {
        return NULL;
    }
    st->cinfo.err = jpeg_std_error(&st->error.pub);
    st->error.pub.error_exit = fc_derror_exit;
    st->error.pub.emit_message = fc_demit;
    return st;
}

static void fc_dsetup(struct fc_dstate *st, const unsigned char *jpeg, unsigned long len,
                      unsigned scale_denom) {
    jpeg_create_decompress(&st->cinfo);
    jpeg_mem_src(&st->cinfo, jpeg, len);
    jpeg_read_header(&st->cinfo, TRUE);
    st->cinfo.out_color_space = JCS_RGB;
    st->cinfo.scale_num = 1;
    st->cinfo.scale_denom = scale_denom;
    st->cinfo.dct_method = JDCT_ISLOW;
    jpeg_calc_output_dimensions(&st->cinfo);
}

/* Decodes `jpeg` at 1/scale_denom. Sets *width and *height of the output; with `out` NULL
 * stops there (headers only), else decodes into `out`, which must hold exactly
 * width * height * 3 bytes (`out_len`). Returns 0, or -1 with a message in `err`. */
int fc_jpeg_decode_rgb(const unsigned char *jpeg, unsigned long len, unsigned scale_denom,
                       unsigned char *out, size_t out_len, unsigned *width, unsigned *height,
                       char *err, size_t err_len) {
    struct fc_dstate *st = fc_dopen();
    if (st == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    if (setjmp(st->error.jump)) {
        snprintf(err, err_len, "%s", st->error.message);
        jpeg_destroy_decompress(&st->cinfo);
        free(st);
        return -1;
    }
    fc_dsetup(st, jpeg, len, scale_denom);
    *width = st->cinfo.output_width;
    *height = st->cinfo.output_height;
    size_t stride = (size_t)st->cinfo.output_width * 3;
    if (out == NULL) {
        jpeg_destroy_decompress(&st->cinfo);
        free(st);
        return 0;
    }
    if (st->cinfo.output_components != 3 || stride * st->cinfo.output_height != out_len) {
        snprintf(err, err_len, "output buffer does not match the decoded size");
        jpeg_destroy_decompress(&st->cinfo);
        free(st);
        return -1;
    }
    jpeg_start_decompress(&st->cinfo);
    while (st->cinfo.output_scanline < st->cinfo.output_height) {
        JSAMPROW rows[4];
        int n = 0;
        for (; n < 4 && st->cinfo.output_scanline + n < st->cinfo.output_height; n++) {
            rows[n] = out + (size_t)(st->cinfo.output_scanline + n) * stride;
        }
        jpeg_read_scanlines(&st->cinfo, rows, n);
    }
    jpeg_finish_decompress(&st->cinfo);
    jpeg_destroy_decompress(&st->cinfo);
    free(st);
    return 0;
}
